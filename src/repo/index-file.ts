/**
 * The backup index (docs/format.md, "Backup index"): one per backup per device, complete on its
 * own — a restore reads this one file and the packs it names, never a chain.
 *
 *   0  magic "BKPI"             4 bytes
 *   4  version                  u16 (2)
 *   6  flags                    u16 (0)
 *   8  header length H          u32
 *  12  header                   H bytes of UTF-8 JSON (IndexHeader)
 *      pack count P             u32
 *      pack ids                 P x 16 bytes
 *      entry count N            u32 (= ceil(device size / chunk size): one per region)
 *      entries                  N x 120 bytes, in device order:
 *        base kind u8 (0 zero, 1 data), flags u8 (bit 0: patch), reserved u16, region length u32,
 *        base ref (52), patch ref (52), patch piece mask u64; a ref is pack ordinal u32,
 *        envelope offset u64, envelope length u32, plain length u32, chunk id 32 bytes
 *      SHA-256 of every byte before it (32 bytes)
 */
import { createHash } from 'node:crypto';
import { ENVELOPE_HEADER_SIZE, MAX_ENVELOPE_SIZE } from './envelope.js';

export const INDEX_MAGIC = Buffer.from('BKPI', 'latin1');
export const INDEX_VERSION = 2;
export const INDEX_ENTRY_SIZE = 120;
const REF_SIZE = 52;
const BASE_AT = 8;
const PATCH_AT = BASE_AT + REF_SIZE;
const MASK_AT = PATCH_AT + REF_SIZE;
export const BASE_ZERO = 0;
export const BASE_DATA = 1;
const FLAG_PATCH = 1;
/** Most pieces a region may have: the patch mask is 64 bits. */
export const MAX_PIECES = 64;

/** The piece size bkp writes for a chunk size (a power of two): 64 KiB, or larger so that a region has at most 64. */
export function pieceSizeFor(chunkSize: number): number {
  return Math.min(chunkSize, Math.max(64 * 1024, chunkSize / MAX_PIECES));
}

export interface DeviceIdentity {
  /** Stable name of the device inside the repository (derived from its path). */
  key: string;
  path: string;
  size: number;
  logicalBlockSize: number;
  fsType: string | null;
  fsUuid: string | null;
}

export interface CbtState {
  generationId: string;
  snapNumber: number;
  blockSize: number;
  blockCount: number;
}

export interface BackupStats {
  bytesRead: number;
  bytesStored: number;
  chunksNew: number;
  chunksReused: number;
  chunksZero: number;
  durationMs: number;
}

export interface IndexHeader {
  formatVersion: 2;
  backupId: string;
  kind: 'full' | 'incr';
  device: DeviceIdentity;
  /** ISO time the data was frozen (snapshot take, or start of the read without snapshot). */
  time: string;
  toolVersion: string;
  /** Bytes per region (the repository's chunk size when the backup was made). */
  chunkSize: number;
  /** Bytes per piece: the unit of a patch (chunkSize / pieceSize ≤ 64, chunkSize a multiple). */
  pieceSize: number;
  parent: string | null;
  /**
   * When the device's newest full backup was taken (its `time`), carried from backup to backup so
   * the schedule still knows it after retention removed that full; null when unknown (optional:
   * indexes written before this field lack it).
   */
  lastFullTime?: string | null;
  /** True when the data came from a snapshot (consistent), false for a direct read. */
  snapshot: boolean;
  cbt: CbtState | null;
  /** How an incremental chose what to read, and why ('cbt' or 'digest'). */
  method: { mode: 'full' | 'cbt' | 'digest'; reason: string | null };
  stats: BackupStats;
}

/**
 * The entry table of an index, held in its on-disk layout: one 120-byte entry per region and no
 * object per entry (a decoded index is a view of the bytes read; a new one is built in place and
 * written as it is).
 *
 * A region's content is its base (zeros, or one chunk of the whole region) overlaid by at most
 * one patch: a chunk whose plaintext is the region's pieces named by the patch mask, in device
 * order. Each stored chunk an entry names is a *ref*, numbered `2·region` (base) and
 * `2·region + 1` (patch), so code that only follows chunks (dedup, gc, verify) treats both alike.
 */
export class IndexEntries {
  readonly length: number;

  constructor(readonly table: Buffer) {
    if (table.length % INDEX_ENTRY_SIZE !== 0) throw new Error(`entry table of ${table.length} bytes`);
    this.length = table.length / INDEX_ENTRY_SIZE;
  }

  /** A table of `n` entries, every one a zero region of length 0 until set. */
  static alloc(n: number): IndexEntries {
    return new IndexEntries(Buffer.alloc(n * INDEX_ENTRY_SIZE));
  }

  /** A copy that can be changed without touching this one (unused fields written as zeros). */
  clone(): IndexEntries {
    const copy = new IndexEntries(Buffer.from(this.table));
    copy.clearUnused();
    return copy;
  }

  /**
   * The table as it is to be written: the fields a zero base or an absent patch does not use hold
   * zeros (docs/format.md). The table itself when it already does, else a cleaned copy.
   */
  forWriting(): Buffer {
    for (let i = 0; i < this.length; i++) if (!this.isClean(i)) return this.clone().table;
    return this.table;
  }

  private isClean(i: number): boolean {
    const o = i * INDEX_ENTRY_SIZE;
    if (!this.baseIsData(i) && this.table.compare(ZEROS, 0, REF_SIZE, o + BASE_AT, o + BASE_AT + REF_SIZE) !== 0) return false;
    return this.hasPatch(i) || this.table.compare(ZEROS, 0, REF_SIZE + 8, o + PATCH_AT, o + INDEX_ENTRY_SIZE) === 0;
  }

  private clearUnused(): void {
    for (let i = 0; i < this.length; i++) {
      const o = i * INDEX_ENTRY_SIZE;
      if (!this.baseIsData(i)) this.table.fill(0, o + BASE_AT, o + BASE_AT + REF_SIZE);
      if (!this.hasPatch(i)) this.table.fill(0, o + PATCH_AT, o + INDEX_ENTRY_SIZE);
    }
  }

  /** Bytes of the device this region covers. */
  regionLength(i: number): number {
    return this.table.readUInt32LE(i * INDEX_ENTRY_SIZE + 4);
  }

  baseIsData(i: number): boolean {
    return this.table[i * INDEX_ENTRY_SIZE] === BASE_DATA;
  }

  hasPatch(i: number): boolean {
    return (this.table[i * INDEX_ENTRY_SIZE + 1]! & FLAG_PATCH) !== 0;
  }

  /** The pieces the patch covers (bit p: piece p of the region); 0n without a patch. */
  patchMask(i: number): bigint {
    return this.table.readBigUInt64LE(i * INDEX_ENTRY_SIZE + MASK_AT);
  }

  /** A region with no data at all: zero base and no patch. */
  isZero(i: number): boolean {
    return !this.baseIsData(i) && !this.hasPatch(i);
  }

  /** Whether ref `r` names a stored chunk (a data base, or a patch that is present). */
  hasRef(r: number): boolean {
    return r % 2 === 0 ? this.baseIsData(r / 2) : this.hasPatch((r - 1) / 2);
  }

  private refAt(r: number): number {
    return (r >>> 1) * INDEX_ENTRY_SIZE + (r & 1 ? PATCH_AT : BASE_AT);
  }

  refPack(r: number): number {
    return this.table.readUInt32LE(this.refAt(r));
  }

  /** Offset of the chunk's envelope in its pack. */
  refOffset(r: number): number {
    const o = this.refAt(r) + 4;
    return this.table.readUInt32LE(o + 4) * 2 ** 32 + this.table.readUInt32LE(o);
  }

  /** Length of the envelope in its pack. */
  refLength(r: number): number {
    return this.table.readUInt32LE(this.refAt(r) + 12);
  }

  /** Length of the chunk's plaintext. */
  refPlain(r: number): number {
    return this.table.readUInt32LE(this.refAt(r) + 16);
  }

  /** The chunk id: a view into the table. */
  refId(r: number): Buffer {
    const o = this.refAt(r) + 20;
    return this.table.subarray(o, o + 32);
  }

  refIdEquals(r: number, id: Uint8Array): boolean {
    const o = this.refAt(r) + 20;
    return this.table.compare(id, 0, 32, o, o + 32) === 0;
  }

  /** Ref `r` as an object (for code that is not on a per-chunk hot path); undefined when absent. */
  ref(r: number): ChunkRef | undefined {
    if (!this.hasRef(r)) return undefined;
    return { packOrdinal: this.refPack(r), offset: this.refOffset(r), length: this.refLength(r), plainLength: this.refPlain(r), id: this.refId(r) };
  }

  /** Region `i` becomes zeros (no patch). */
  setZero(i: number, regionLength: number): void {
    const o = i * INDEX_ENTRY_SIZE;
    this.table.fill(0, o, o + INDEX_ENTRY_SIZE);
    this.table.writeUInt32LE(regionLength, o + 4);
  }

  /** Region `i` becomes one stored chunk of the whole region (no patch). */
  setData(i: number, packOrdinal: number, offset: number, length: number, regionLength: number, id: Uint8Array): void {
    const o = i * INDEX_ENTRY_SIZE;
    this.table.fill(0, o, o + INDEX_ENTRY_SIZE);
    this.table[o] = BASE_DATA;
    this.table.writeUInt32LE(regionLength, o + 4);
    this.writeRef(o + BASE_AT, packOrdinal, offset, length, regionLength, id);
  }

  /** Region `i` keeps its base and gets a patch over the pieces of `mask` (replacing any patch). */
  setPatch(i: number, mask: bigint, packOrdinal: number, offset: number, length: number, plainLength: number, id: Uint8Array): void {
    if (mask === 0n) throw new Error('a patch covers at least one piece');
    const o = i * INDEX_ENTRY_SIZE;
    this.table[o + 1] = FLAG_PATCH;
    this.writeRef(o + PATCH_AT, packOrdinal, offset, length, plainLength, id);
    this.table.writeBigUInt64LE(mask, o + MASK_AT);
  }

  /** Ref `r` moves (repack): same chunk, another place. */
  relocate(r: number, packOrdinal: number, offset: number, length: number): void {
    const o = this.refAt(r);
    this.table.writeUInt32LE(packOrdinal, o);
    this.table.writeUInt32LE(offset % 2 ** 32, o + 4);
    this.table.writeUInt32LE(Math.floor(offset / 2 ** 32), o + 8);
    this.table.writeUInt32LE(length, o + 12);
  }

  setRefPack(r: number, packOrdinal: number): void {
    this.table.writeUInt32LE(packOrdinal, this.refAt(r));
  }

  private writeRef(o: number, packOrdinal: number, offset: number, length: number, plainLength: number, id: Uint8Array): void {
    this.table.writeUInt32LE(packOrdinal, o);
    this.table.writeUInt32LE(offset % 2 ** 32, o + 4);
    this.table.writeUInt32LE(Math.floor(offset / 2 ** 32), o + 8);
    this.table.writeUInt32LE(length, o + 12);
    this.table.writeUInt32LE(plainLength, o + 16);
    this.table.set(id.subarray(0, 32), o + 20);
  }
}

/** A stored chunk named by an index entry. */
export interface ChunkRef {
  packOrdinal: number;
  offset: number;
  length: number;
  plainLength: number;
  id: Buffer;
}

const ZEROS = Buffer.alloc(64);

export interface BackupIndex {
  header: IndexHeader;
  packs: string[];
  entries: IndexEntries;
}

export class IndexFormatError extends Error {}

export function encodeIndex(index: BackupIndex): Buffer {
  return Buffer.concat(encodeIndexParts(index));
}

/** The encoded index as parts (head, entry table as it is held, checksum): no copy of the table. */
export function encodeIndexParts(index: BackupIndex): Buffer[] {
  const json = Buffer.from(JSON.stringify(index.header), 'utf8');
  const head = Buffer.alloc(12 + json.length + 4 + index.packs.length * 16 + 4);
  let o = 0;
  INDEX_MAGIC.copy(head, o); o += 4;
  head.writeUInt16LE(INDEX_VERSION, o); o += 2;
  head.writeUInt16LE(0, o); o += 2;
  head.writeUInt32LE(json.length, o); o += 4;
  json.copy(head, o); o += json.length;
  head.writeUInt32LE(index.packs.length, o); o += 4;
  for (const p of index.packs) {
    if (!/^[0-9a-f]{32}$/.test(p)) throw new Error(`bad pack id ${p}`);
    head.write(p, o, 'hex'); o += 16;
  }
  head.writeUInt32LE(index.entries.length, o);
  const table = index.entries.forWriting();
  return [head, table, createHash('sha256').update(head).update(table).digest()];
}

function need(b: Buffer, o: number, n: number) {
  if (o + n > b.length) throw new IndexFormatError('index truncated');
}

/** Checks and decodes an index. The result's entry table is a view of `b` (not changed here): the caller hands `b` over. */
export function decodeIndex(b: Buffer): BackupIndex {
  if (b.length < 12 + 32) throw new IndexFormatError('index truncated');
  if (!b.subarray(0, 4).equals(INDEX_MAGIC)) throw new IndexFormatError('bad index magic');
  const version = b.readUInt16LE(4);
  if (version !== INDEX_VERSION) throw new IndexFormatError(`index format version ${version} is not supported (this bkp reads version ${INDEX_VERSION})`);
  if (b.readUInt16LE(6) !== 0) throw new IndexFormatError(`unknown index flags 0x${b.readUInt16LE(6).toString(16)}`);
  const body = b.subarray(0, b.length - 32);
  if (!createHash('sha256').update(body).digest().equals(b.subarray(b.length - 32))) {
    throw new IndexFormatError('index checksum mismatch');
  }
  let o = 8;
  const hlen = b.readUInt32LE(o); o += 4;
  need(body, o, hlen);
  let header: IndexHeader;
  try {
    header = JSON.parse(body.subarray(o, o + hlen).toString('utf8')) as IndexHeader;
  } catch {
    throw new IndexFormatError('index header is not valid JSON');
  }
  o += hlen;
  validateHeader(header);
  need(body, o, 4);
  const pcount = body.readUInt32LE(o); o += 4;
  need(body, o, pcount * 16);
  const packs: string[] = [];
  for (let i = 0; i < pcount; i++, o += 16) packs.push(body.toString('hex', o, o + 16));
  need(body, o, 4);
  const ecount = body.readUInt32LE(o); o += 4;
  if (body.length - o !== ecount * INDEX_ENTRY_SIZE) throw new IndexFormatError('index entry table has the wrong length');
  const expected = Math.ceil(header.device.size / header.chunkSize);
  if (ecount !== expected) throw new IndexFormatError(`index has ${ecount} entries, device needs ${expected}`);
  // validated in place: the table stays a view of the bytes read, no object per entry
  const start = o;
  const { chunkSize, pieceSize } = header;
  for (let i = 0; i < ecount; i++, o += INDEX_ENTRY_SIZE) {
    const kind = body[o]!;
    const flags = body[o + 1]!;
    if (kind !== BASE_ZERO && kind !== BASE_DATA) throw new IndexFormatError(`entry ${i} has unknown kind ${kind}`);
    if ((flags & ~FLAG_PATCH) !== 0) throw new IndexFormatError(`entry ${i} has unknown flags 0x${flags.toString(16)}`);
    if (body.readUInt16LE(o + 2) !== 0) throw new IndexFormatError(`entry ${i} has non-zero reserved bytes`);
    const regionLength = body.readUInt32LE(o + 4);
    const want = Math.min(chunkSize, header.device.size - i * chunkSize);
    if (regionLength !== want) throw new IndexFormatError(`entry ${i} has region length ${regionLength}, expected ${want}`);
    // a zero base's ref is not checked (docs/format.md): it reads as zeros
    if (kind === BASE_DATA) checkRef(body, o + BASE_AT, i, 'base', pcount, regionLength);
    const mask = body.readBigUInt64LE(o + MASK_AT);
    if (flags & FLAG_PATCH) {
      const pieces = Math.ceil(regionLength / pieceSize);
      if (mask === 0n || mask >> BigInt(pieces) !== 0n) throw new IndexFormatError(`entry ${i} has patch mask 0x${mask.toString(16)} for ${pieces} pieces`);
      checkRef(body, o + PATCH_AT, i, 'patch', pcount, maskLength(mask, pieceSize, regionLength));
    } else if (mask !== 0n) {
      throw new IndexFormatError(`entry ${i} has a patch mask but no patch`);
    }
  }
  const entries = new IndexEntries(body.subarray(start, o));
  return { header, packs, entries };
}

/**
 * Where a patch's plaintext goes: the device runs of the pieces of `mask` in the region that
 * starts at `regionOffset`, in order, adjacent pieces merged (the last piece may be short).
 */
export function patchRuns(regionOffset: number, mask: bigint, pieceSize: number, regionLength: number): Array<{ offset: number; length: number }> {
  const out: Array<{ offset: number; length: number }> = [];
  for (let p = 0; p * pieceSize < regionLength; p++) {
    if (((mask >> BigInt(p)) & 1n) === 0n) continue;
    const offset = regionOffset + p * pieceSize;
    const length = Math.min(pieceSize, regionLength - p * pieceSize);
    const prev = out[out.length - 1];
    if (prev && prev.offset + prev.length === offset) prev.length += length;
    else out.push({ offset, length });
  }
  return out;
}

/** Bytes the pieces of `mask` cover in a region of `regionLength` bytes. */
export function maskLength(mask: bigint, pieceSize: number, regionLength: number): number {
  // every masked piece is whole but the region's last, which may be short (decodeIndex calls this
  // for every patched region: no loop over 64 bits)
  const lo = Number(mask & 0xffffffffn);
  const hi = Number(mask >> 32n);
  const n = popcount32(lo) + popcount32(hi);
  if (n === 0) return 0;
  const last = Math.ceil(regionLength / pieceSize) - 1;
  const lastMasked = last < 32 ? (lo >>> last) & 1 : (hi >>> (last - 32)) & 1;
  return n * pieceSize - (lastMasked ? pieceSize - (regionLength - last * pieceSize) : 0);
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

function checkRef(body: Buffer, o: number, i: number, what: string, pcount: number, plainLength: number): void {
  const packOrdinal = body.readUInt32LE(o);
  const hi = body.readUInt32LE(o + 8);
  const length = body.readUInt32LE(o + 12);
  const plain = body.readUInt32LE(o + 16);
  if (packOrdinal >= pcount) throw new IndexFormatError(`entry ${i} ${what} names pack ${packOrdinal} of ${pcount}`);
  if (plain !== plainLength) throw new IndexFormatError(`entry ${i} ${what} has plain length ${plain}, expected ${plainLength}`);
  // a reader allocates the envelope's length and seeks to its offset: bound both
  if (length < ENVELOPE_HEADER_SIZE || length > MAX_ENVELOPE_SIZE) throw new IndexFormatError(`entry ${i} ${what} has envelope length ${length}`);
  if (hi >= 2 ** 21 || hi * 2 ** 32 + body.readUInt32LE(o + 4) + length > Number.MAX_SAFE_INTEGER) {
    throw new IndexFormatError(`entry ${i} ${what} has envelope offset ${body.readBigUInt64LE(o + 4)} out of range`);
  }
}

function validateHeader(h: IndexHeader): void {
  const ok =
    typeof h === 'object' && h !== null && h.formatVersion === INDEX_VERSION && typeof h.backupId === 'string' &&
    typeof h.device === 'object' && h.device !== null && typeof h.device.key === 'string' &&
    Number.isSafeInteger(h.device.size) && h.device.size >= 0 &&
    Number.isSafeInteger(h.chunkSize) && h.chunkSize > 0 && h.chunkSize <= 64 * 1024 * 1024 &&
    Number.isSafeInteger(h.pieceSize) && h.pieceSize > 0 && h.chunkSize % h.pieceSize === 0 && h.chunkSize / h.pieceSize <= MAX_PIECES;
  if (!ok) throw new IndexFormatError('index header is missing required fields');
}

/**
 * Checks a header read on its own (listings read only the header, without the index's checksum):
 * the required fields, and the descriptive fields a listing shows, each of the type bkp writes.
 * A bit flipped in the header usually breaks one of them.
 */
export function parseIndexHeader(json: Buffer): IndexHeader {
  let h: IndexHeader;
  try {
    h = JSON.parse(json.toString('utf8')) as IndexHeader;
  } catch {
    throw new IndexFormatError('index header is not valid JSON');
  }
  validateHeader(h);
  const strOrNull = (v: unknown) => v === null || typeof v === 'string';
  const ok =
    typeof h.time === 'string' && !Number.isNaN(Date.parse(h.time)) && (h.kind === 'full' || h.kind === 'incr') &&
    typeof h.device.path === 'string' && strOrNull(h.device.fsType) && strOrNull(h.device.fsUuid) &&
    typeof h.snapshot === 'boolean' && strOrNull(h.parent) &&
    typeof h.stats === 'object' && h.stats !== null && Number.isSafeInteger(h.stats.bytesStored) && h.stats.bytesStored >= 0;
  if (!ok) throw new IndexFormatError('index header has a field of the wrong type');
  return h;
}

/**
 * An index is named after what it holds (docs/format.md, section 8): the backup id and device key
 * of its key equal those of its header. A mismatch means the object is not the one its name says
 * (swapped, copied or renamed): restoring it would write another backup's bytes.
 */
export function checkIndexName(h: IndexHeader, backupId: string, deviceKey: string): void {
  if (h.backupId !== backupId || h.device.key !== deviceKey) {
    throw new IndexFormatError(`its header names backup ${h.backupId} device ${h.device.key}, not the backup and device of its name`);
  }
}

export function indexKey(backupId: string, deviceKey: string): string {
  return `backups/${backupId}/${deviceKey}.idx`;
}

export function parseIndexKey(key: string): { backupId: string; deviceKey: string } | undefined {
  const m = /^backups\/([^/]+)\/([^/]+)\.idx$/.exec(key);
  return m ? { backupId: m[1]!, deviceKey: m[2]! } : undefined;
}
