/**
 * The backup index (docs/format.md, "Backup index"): one per backup per device, complete on its
 * own — a restore reads this one file and the packs it names, never a chain.
 *
 *   0  magic "BKPI"             4 bytes
 *   4  version                  u16 (1)
 *   6  flags                    u16 (0)
 *   8  header length H          u32
 *  12  header                   H bytes of UTF-8 JSON (IndexHeader)
 *      pack count P             u32
 *      pack ids                 P x 16 bytes
 *      entry count N            u32 (= ceil(device size / chunk size))
 *      entries                  N x 56 bytes, in device order:
 *        kind u8 (0 zero, 1 data), reserved 3, pack ordinal u32, envelope offset u64,
 *        envelope length u32, plain length u32, chunk id 32 bytes
 *      SHA-256 of every byte before it (32 bytes)
 */
import { createHash } from 'node:crypto';
import { ENVELOPE_HEADER_SIZE, MAX_ENVELOPE_SIZE } from './envelope.js';

export const INDEX_MAGIC = Buffer.from('BKPI', 'latin1');
export const INDEX_VERSION = 1;
export const INDEX_ENTRY_SIZE = 56;
export const ENTRY_ZERO = 0;
/** The id every decoded zero entry carries (shared; never written to). */
export const ZERO_CHUNK_ID: Buffer = Buffer.alloc(32);
export const ENTRY_DATA = 1;

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
  formatVersion: 1;
  backupId: string;
  kind: 'full' | 'incr';
  device: DeviceIdentity;
  /** ISO time the data was frozen (snapshot take, or start of the read without snapshot). */
  time: string;
  toolVersion: string;
  chunkSize: number;
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

/** One chunk of the device. Zero entries have no location; their id is all zeros. */
export interface IndexEntry {
  kind: typeof ENTRY_ZERO | typeof ENTRY_DATA;
  packOrdinal: number;
  offset: number;
  length: number;
  plainLength: number;
  id: Buffer;
}

/**
 * The entry table of an index, held in its on-disk layout: 56 bytes per chunk and no object per
 * entry, so that a device of a million chunks costs 56 MB (a decoded index is a view of the bytes
 * read; a new one is built in place and written as it is).
 */
export class IndexEntries implements Iterable<IndexEntry> {
  readonly length: number;

  constructor(readonly table: Buffer) {
    if (table.length % INDEX_ENTRY_SIZE !== 0) throw new Error(`entry table of ${table.length} bytes`);
    this.length = table.length / INDEX_ENTRY_SIZE;
  }

  /** A table of `n` entries, every one zero with plain length 0 until set. */
  static alloc(n: number): IndexEntries {
    return new IndexEntries(Buffer.alloc(n * INDEX_ENTRY_SIZE));
  }

  static from(entries: readonly IndexEntry[]): IndexEntries {
    const t = IndexEntries.alloc(entries.length);
    entries.forEach((e, i) => (e.kind === ENTRY_DATA ? t.setData(i, e.packOrdinal, e.offset, e.length, e.plainLength, e.id) : t.setZero(i, e.plainLength)));
    return t;
  }

  /** A copy that can be changed without touching this one (zero entries written as zeros). */
  clone(): IndexEntries {
    const copy = new IndexEntries(Buffer.from(this.table));
    copy.clearZeroEntries();
    return copy;
  }

  /**
   * The table as it is to be written: zero entries hold zeros in every field but kind and plain
   * length (docs/format.md). The table itself when it already does, else a cleaned copy.
   */
  forWriting(): Buffer {
    for (let i = 0; i < this.length; i++) {
      if (!this.isData(i) && !isClearZero(this.table, i * INDEX_ENTRY_SIZE)) return this.clone().table;
    }
    return this.table;
  }

  private clearZeroEntries(): void {
    for (let i = 0; i < this.length; i++) if (!this.isData(i)) this.setZero(i, this.plainLength(i));
  }

  kind(i: number): number {
    return this.table[i * INDEX_ENTRY_SIZE]!;
  }

  isData(i: number): boolean {
    return this.kind(i) === ENTRY_DATA;
  }

  packOrdinal(i: number): number {
    return this.table.readUInt32LE(i * INDEX_ENTRY_SIZE + 4);
  }

  offset(i: number): number {
    const o = i * INDEX_ENTRY_SIZE + 8;
    return this.table.readUInt32LE(o + 4) * 2 ** 32 + this.table.readUInt32LE(o);
  }

  /** Length of the envelope in its pack. */
  envelopeLength(i: number): number {
    return this.table.readUInt32LE(i * INDEX_ENTRY_SIZE + 16);
  }

  plainLength(i: number): number {
    return this.table.readUInt32LE(i * INDEX_ENTRY_SIZE + 20);
  }

  /** The chunk id: a view into the table (all zeros for a zero entry). */
  id(i: number): Buffer {
    if (!this.isData(i)) return ZERO_CHUNK_ID;
    const o = i * INDEX_ENTRY_SIZE + 24;
    return this.table.subarray(o, o + 32);
  }

  idEquals(i: number, id: Uint8Array): boolean {
    if (!this.isData(i)) return ZERO_CHUNK_ID.compare(id, 0, 32) === 0;
    const o = i * INDEX_ENTRY_SIZE + 24;
    return this.table.compare(id, 0, 32, o, o + 32) === 0;
  }

  /** Entry `i` as an object (for code that is not on a per-chunk hot path). */
  get(i: number): IndexEntry {
    const kind = this.kind(i) as IndexEntry['kind'];
    return kind === ENTRY_DATA
      ? { kind, packOrdinal: this.packOrdinal(i), offset: this.offset(i), length: this.envelopeLength(i), plainLength: this.plainLength(i), id: this.id(i) }
      : { kind, packOrdinal: 0, offset: 0, length: 0, plainLength: this.plainLength(i), id: ZERO_CHUNK_ID };
  }

  setZero(i: number, plainLength: number): void {
    const o = i * INDEX_ENTRY_SIZE;
    this.table.fill(0, o, o + INDEX_ENTRY_SIZE);
    this.table.writeUInt32LE(plainLength, o + 20);
  }

  setData(i: number, packOrdinal: number, offset: number, length: number, plainLength: number, id: Uint8Array): void {
    const o = i * INDEX_ENTRY_SIZE;
    this.table.writeUInt32LE(ENTRY_DATA, o); // kind, and the three reserved bytes cleared
    this.table.writeUInt32LE(packOrdinal, o + 4);
    this.table.writeUInt32LE(offset % 2 ** 32, o + 8);
    this.table.writeUInt32LE(Math.floor(offset / 2 ** 32), o + 12);
    this.table.writeUInt32LE(length, o + 16);
    this.table.writeUInt32LE(plainLength, o + 20);
    this.table.set(id.subarray(0, 32), o + 24);
  }

  setPackOrdinal(i: number, packOrdinal: number): void {
    this.table.writeUInt32LE(packOrdinal, i * INDEX_ENTRY_SIZE + 4);
  }

  *[Symbol.iterator](): Iterator<IndexEntry> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }

  toArray(): IndexEntry[] {
    return [...this];
  }
}

/** True when the zero entry at byte `o` holds zeros in its unchecked fields. */
function isClearZero(table: Buffer, o: number): boolean {
  return table.compare(ZERO_CHUNK_ID, 0, 16, o + 4, o + 20) === 0 && table.compare(ZERO_CHUNK_ID, 0, 32, o + 24, o + INDEX_ENTRY_SIZE) === 0;
}

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
  if (version !== INDEX_VERSION) throw new IndexFormatError(`unsupported index version ${version}`);
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
  for (let i = 0; i < ecount; i++, o += INDEX_ENTRY_SIZE) {
    const kind = body.readUInt8(o);
    if (kind !== ENTRY_ZERO && kind !== ENTRY_DATA) throw new IndexFormatError(`entry ${i} has unknown kind ${kind}`);
    if (body.readUIntLE(o + 1, 3) !== 0) throw new IndexFormatError(`entry ${i} has non-zero reserved bytes`);
    const plainLength = body.readUInt32LE(o + 20);
    const wantPlain = Math.min(header.chunkSize, header.device.size - i * header.chunkSize);
    if (plainLength !== wantPlain) throw new IndexFormatError(`entry ${i} has plain length ${plainLength}, expected ${wantPlain}`);
    if (kind === ENTRY_ZERO) continue; // its other fields are not checked (docs/format.md); they read as zeros
    const packOrdinal = body.readUInt32LE(o + 4);
    const hi = body.readUInt32LE(o + 12);
    const length = body.readUInt32LE(o + 16);
    if (packOrdinal >= pcount) throw new IndexFormatError(`entry ${i} names pack ${packOrdinal} of ${pcount}`);
    // a reader allocates the envelope's length and seeks to its offset: bound both
    if (length < ENVELOPE_HEADER_SIZE || length > MAX_ENVELOPE_SIZE) throw new IndexFormatError(`entry ${i} has envelope length ${length}`);
    if (hi >= 2 ** 21 || hi * 2 ** 32 + body.readUInt32LE(o + 8) + length > Number.MAX_SAFE_INTEGER) {
      throw new IndexFormatError(`entry ${i} has envelope offset ${body.readBigUInt64LE(o + 8)} out of range`);
    }
  }
  const entries = new IndexEntries(body.subarray(start, o));
  return { header, packs, entries };
}

function validateHeader(h: IndexHeader): void {
  const ok =
    typeof h === 'object' && h !== null && h.formatVersion === 1 && typeof h.backupId === 'string' &&
    typeof h.device === 'object' && h.device !== null && typeof h.device.key === 'string' &&
    Number.isSafeInteger(h.device.size) && h.device.size >= 0 &&
    Number.isSafeInteger(h.chunkSize) && h.chunkSize > 0 && h.chunkSize <= 64 * 1024 * 1024;
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
