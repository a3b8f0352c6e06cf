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

export interface BackupIndex {
  header: IndexHeader;
  packs: string[];
  entries: IndexEntry[];
}

export class IndexFormatError extends Error {}

export function encodeIndex(index: BackupIndex): Buffer {
  const json = Buffer.from(JSON.stringify(index.header), 'utf8');
  const size = 12 + json.length + 4 + index.packs.length * 16 + 4 + index.entries.length * INDEX_ENTRY_SIZE + 32;
  const b = Buffer.alloc(size);
  let o = 0;
  INDEX_MAGIC.copy(b, o); o += 4;
  b.writeUInt16LE(INDEX_VERSION, o); o += 2;
  b.writeUInt16LE(0, o); o += 2;
  b.writeUInt32LE(json.length, o); o += 4;
  json.copy(b, o); o += json.length;
  b.writeUInt32LE(index.packs.length, o); o += 4;
  for (const p of index.packs) {
    if (!/^[0-9a-f]{32}$/.test(p)) throw new Error(`bad pack id ${p}`);
    b.write(p, o, 'hex'); o += 16;
  }
  b.writeUInt32LE(index.entries.length, o); o += 4;
  for (const e of index.entries) {
    b.writeUInt8(e.kind, o);
    b.writeUInt32LE(e.packOrdinal, o + 4);
    b.writeBigUInt64LE(BigInt(e.offset), o + 8);
    b.writeUInt32LE(e.length, o + 16);
    b.writeUInt32LE(e.plainLength, o + 20);
    e.id.copy(b, o + 24);
    o += INDEX_ENTRY_SIZE;
  }
  createHash('sha256').update(b.subarray(0, o)).digest().copy(b, o);
  return b;
}

function need(b: Buffer, o: number, n: number) {
  if (o + n > b.length) throw new IndexFormatError('index truncated');
}

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
  const entries: IndexEntry[] = new Array(ecount);
  // Memory per entry matters (a 1 TiB device has a million): zero entries share one id, and the
  // ids of data entries are views into one block instead of a buffer each.
  const ids = Buffer.allocUnsafeSlow(ecount * 32);
  for (let i = 0; i < ecount; i++, o += INDEX_ENTRY_SIZE) {
    const kind = body.readUInt8(o);
    if (kind !== ENTRY_ZERO && kind !== ENTRY_DATA) throw new IndexFormatError(`entry ${i} has unknown kind ${kind}`);
    if (body.readUIntLE(o + 1, 3) !== 0) throw new IndexFormatError(`entry ${i} has non-zero reserved bytes`);
    const plainLength = body.readUInt32LE(o + 20);
    const wantPlain = Math.min(header.chunkSize, header.device.size - i * header.chunkSize);
    if (plainLength !== wantPlain) throw new IndexFormatError(`entry ${i} has plain length ${plainLength}, expected ${wantPlain}`);
    if (kind === ENTRY_ZERO) {
      entries[i] = { kind, packOrdinal: 0, offset: 0, length: 0, plainLength, id: ZERO_CHUNK_ID };
      continue;
    }
    const hi = body.readUInt32LE(o + 12);
    const e: IndexEntry = {
      kind,
      packOrdinal: body.readUInt32LE(o + 4),
      offset: hi * 2 ** 32 + body.readUInt32LE(o + 8),
      length: body.readUInt32LE(o + 16),
      plainLength,
      id: ids.subarray(i * 32, i * 32 + 32),
    };
    body.copy(ids, i * 32, o + 24, o + 56);
    if (e.packOrdinal >= pcount) throw new IndexFormatError(`entry ${i} names pack ${e.packOrdinal} of ${pcount}`);
    // a reader allocates the envelope's length and seeks to its offset: bound both
    if (e.length < ENVELOPE_HEADER_SIZE || e.length > MAX_ENVELOPE_SIZE) throw new IndexFormatError(`entry ${i} has envelope length ${e.length}`);
    if (hi >= 2 ** 21 || e.offset + e.length > Number.MAX_SAFE_INTEGER) throw new IndexFormatError(`entry ${i} has envelope offset ${body.readBigUInt64LE(o + 8)} out of range`);
    entries[i] = e;
  }
  return { header, packs, entries };
}

function validateHeader(h: IndexHeader): void {
  const ok =
    h && h.formatVersion === 1 && typeof h.backupId === 'string' && h.device && typeof h.device.key === 'string' &&
    Number.isSafeInteger(h.device.size) && h.device.size >= 0 &&
    Number.isSafeInteger(h.chunkSize) && h.chunkSize > 0 && h.chunkSize <= 64 * 1024 * 1024;
  if (!ok) throw new IndexFormatError('index header is missing required fields');
}

export function indexKey(backupId: string, deviceKey: string): string {
  return `backups/${backupId}/${deviceKey}.idx`;
}

export function parseIndexKey(key: string): { backupId: string; deviceKey: string } | undefined {
  const m = /^backups\/([^/]+)\/([^/]+)\.idx$/.exec(key);
  return m ? { backupId: m[1]!, deviceKey: m[2]! } : undefined;
}
