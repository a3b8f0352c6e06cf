/**
 * The chunk envelope: how one chunk is stored inside a pack (docs/format.md, "Chunk envelope").
 *
 *   0  magic "BKPC"            4 bytes
 *   4  version                 u8  (1)
 *   5  flags                   u8  bit 0: payload is zstd-compressed; bit 1: encrypted (reserved, 0 in v1)
 *   6  reserved                u16 (0)
 *   8  plain length            u32 (bytes of the chunk's plaintext)
 *  12  payload length          u32 (bytes following the header)
 *  16  crc32                   u32 (zlib CRC-32 of bytes 0..15, 20..55 and the payload)
 *  20  reserved                u32 (0)
 *  24  chunk id                32 bytes: SHA-256 of the plaintext
 *  56  payload
 * All integers little-endian.
 */
import { crc32 } from 'node:zlib';

export const ENVELOPE_MAGIC = Buffer.from('BKPC', 'latin1');
export const ENVELOPE_VERSION = 1;
export const ENVELOPE_HEADER_SIZE = 56;
export const FLAG_ZSTD = 0x01;
export const FLAG_ENCRYPTED = 0x02;
const KNOWN_FLAGS = FLAG_ZSTD | FLAG_ENCRYPTED;
/** Chunks are at most 64 MiB; anything larger in a header is damage, not data. */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** The longest valid envelope: header, and a payload of at most MAX_CHUNK_SIZE + 1024 bytes. */
export const MAX_ENVELOPE_SIZE = ENVELOPE_HEADER_SIZE + MAX_CHUNK_SIZE + 1024;

export interface EnvelopeHeader {
  flags: number;
  plainLength: number;
  payloadLength: number;
  crc: number;
  id: Buffer;
}

function checksum(header: Buffer, payload: Uint8Array): number {
  let c = crc32(header.subarray(0, 16));
  c = crc32(header.subarray(20, ENVELOPE_HEADER_SIZE), c);
  return crc32(payload, c);
}

/** Builds the 56-byte header for a payload; the caller writes header then payload. */
export function encodeEnvelopeHeader(id: Uint8Array, flags: number, plainLength: number, payload: Uint8Array): Buffer {
  if (id.length !== 32) throw new Error('chunk id must be 32 bytes');
  const h = Buffer.alloc(ENVELOPE_HEADER_SIZE);
  ENVELOPE_MAGIC.copy(h, 0);
  h.writeUInt8(ENVELOPE_VERSION, 4);
  h.writeUInt8(flags, 5);
  h.writeUInt32LE(plainLength, 8);
  h.writeUInt32LE(payload.length, 12);
  Buffer.from(id.buffer, id.byteOffset, 32).copy(h, 24);
  h.writeUInt32LE(checksum(h, payload), 16);
  return h;
}

export class EnvelopeError extends Error {}

/** Parses and checks a header; throws EnvelopeError with the reason when it is not a valid one. */
export function decodeEnvelopeHeader(buf: Uint8Array): EnvelopeHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < ENVELOPE_HEADER_SIZE) throw new EnvelopeError(`envelope truncated (${b.length} bytes)`);
  if (!b.subarray(0, 4).equals(ENVELOPE_MAGIC)) throw new EnvelopeError('bad envelope magic');
  const version = b.readUInt8(4);
  if (version !== ENVELOPE_VERSION) throw new EnvelopeError(`unsupported envelope version ${version}`);
  const flags = b.readUInt8(5);
  if (flags & ~KNOWN_FLAGS) throw new EnvelopeError(`unknown envelope flags 0x${flags.toString(16)}`);
  if (flags & FLAG_ENCRYPTED) throw new EnvelopeError('encrypted chunks are not supported by this version');
  const plainLength = b.readUInt32LE(8);
  const payloadLength = b.readUInt32LE(12);
  if (plainLength > MAX_CHUNK_SIZE || ENVELOPE_HEADER_SIZE + payloadLength > MAX_ENVELOPE_SIZE) throw new EnvelopeError('envelope lengths out of range');
  if (!(flags & FLAG_ZSTD) && payloadLength !== plainLength) throw new EnvelopeError('stored chunk length mismatch');
  return { flags, plainLength, payloadLength, crc: b.readUInt32LE(16), id: Buffer.from(b.subarray(24, 56)) };
}

/**
 * Checks a whole envelope (header + payload) and returns its header and payload view.
 * Does not decompress or hash: that is the caller's (worker's) job.
 */
export function openEnvelope(buf: Uint8Array): { header: EnvelopeHeader; payload: Buffer } {
  const header = decodeEnvelopeHeader(buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length !== ENVELOPE_HEADER_SIZE + header.payloadLength) {
    throw new EnvelopeError(`envelope length ${b.length} does not match header (${ENVELOPE_HEADER_SIZE + header.payloadLength})`);
  }
  const payload = b.subarray(ENVELOPE_HEADER_SIZE);
  if (checksum(b, payload) !== header.crc) throw new EnvelopeError('envelope checksum mismatch');
  return { header, payload };
}
