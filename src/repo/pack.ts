/**
 * Pack objects (docs/format.md, "Packs"): envelopes back to back, then a trailer that lists them,
 * so that a pack can be understood without any index.
 *
 *   envelopes ...
 *   trailer entries, count x 48 bytes: chunk id (32), envelope offset u64, envelope length u32, plain length u32
 *   footer, 16 bytes: entry count u32, version u8 (1), reserved 3 bytes, crc32 of the entries u32, magic "BKPK"
 */
import { crc32 } from 'node:zlib';
import { randomBytes } from 'node:crypto';

export const PACK_MAGIC = Buffer.from('BKPK', 'latin1');
export const PACK_VERSION = 1;
export const PACK_FOOTER_SIZE = 16;
export const PACK_ENTRY_SIZE = 48;

export interface PackEntry {
  id: Buffer;
  offset: number;
  length: number;
  plainLength: number;
}

export function newPackId(): string {
  return randomBytes(16).toString('hex');
}

export function packKey(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}.pack`;
}

export function packIdFromKey(key: string): string | undefined {
  const m = /^packs\/([0-9a-f]{2})\/([0-9a-f]{32})\.pack$/.exec(key);
  return m && m[2]!.startsWith(m[1]!) ? m[2] : undefined;
}

export function encodePackTrailer(entries: readonly PackEntry[]): Buffer {
  const t = Buffer.alloc(entries.length * PACK_ENTRY_SIZE + PACK_FOOTER_SIZE);
  entries.forEach((e, i) => {
    const o = i * PACK_ENTRY_SIZE;
    e.id.copy(t, o);
    t.writeBigUInt64LE(BigInt(e.offset), o + 32);
    t.writeUInt32LE(e.length, o + 40);
    t.writeUInt32LE(e.plainLength, o + 44);
  });
  const f = entries.length * PACK_ENTRY_SIZE;
  t.writeUInt32LE(entries.length, f);
  t.writeUInt8(PACK_VERSION, f + 4);
  t.writeUInt32LE(crc32(t.subarray(0, f)), f + 8);
  PACK_MAGIC.copy(t, f + 12);
  return t;
}

export class PackFormatError extends Error {}

/**
 * Reads the entry count from a pack's last 16 bytes. Given the pack's size, a count whose entries
 * cannot fit in it is refused here, before a reader fetches (allocates) count x 48 bytes.
 */
export function decodePackFooter(footer: Buffer, packSize?: number): { count: number; crc: number } {
  if (footer.length !== PACK_FOOTER_SIZE) throw new PackFormatError('pack footer truncated');
  if (!footer.subarray(12, 16).equals(PACK_MAGIC)) throw new PackFormatError('bad pack magic: the footer is not at the end of the pack (bytes appended, or the pack cut short)');
  const version = footer.readUInt8(4);
  if (version !== PACK_VERSION) throw new PackFormatError(`unsupported pack version ${version}`);
  const count = footer.readUInt32LE(0);
  if (packSize !== undefined && count * PACK_ENTRY_SIZE + PACK_FOOTER_SIZE > packSize) {
    throw new PackFormatError(`pack footer claims ${count} entries, more than a pack of ${packSize} bytes holds`);
  }
  return { count, crc: footer.readUInt32LE(8) };
}

/** Decodes the trailer entries (the bytes before the footer), checking the footer's CRC. */
export function decodePackEntries(entries: Buffer, footer: { count: number; crc: number }, packSize: number): PackEntry[] {
  if (entries.length !== footer.count * PACK_ENTRY_SIZE) throw new PackFormatError('pack trailer truncated');
  if (crc32(entries) !== footer.crc) throw new PackFormatError('pack trailer checksum mismatch');
  const out: PackEntry[] = [];
  const dataEnd = packSize - entries.length - PACK_FOOTER_SIZE;
  for (let i = 0; i < footer.count; i++) {
    const o = i * PACK_ENTRY_SIZE;
    const e = {
      id: Buffer.from(entries.subarray(o, o + 32)),
      offset: Number(entries.readBigUInt64LE(o + 32)),
      length: entries.readUInt32LE(o + 40),
      plainLength: entries.readUInt32LE(o + 44),
    };
    if (e.offset + e.length > dataEnd) throw new PackFormatError('pack entry points past the data');
    out.push(e);
  }
  return out;
}

/**
 * Reads and checks the trailer of a pack of `packSize` bytes through `read` (a ranged read of the
 * pack, or a view of it when it is in memory). Garbage appended to a pack, or a pack cut short,
 * moves its footer: the magic is then wrong and a PackFormatError says so.
 */
export async function readPackTrailer(packSize: number, read: (offset: number, length: number) => Promise<Buffer> | Buffer): Promise<PackEntry[]> {
  if (packSize < PACK_FOOTER_SIZE) throw new PackFormatError(`pack of ${packSize} bytes has no footer`);
  const footer = decodePackFooter(await read(packSize - PACK_FOOTER_SIZE, PACK_FOOTER_SIZE), packSize);
  const len = footer.count * PACK_ENTRY_SIZE;
  return decodePackEntries(await read(packSize - PACK_FOOTER_SIZE - len, len), footer, packSize);
}
