/**
 * The full check of one stored chunk (docs/format.md, "The chunk envelope"): envelope, chunk id
 * and length as the index names them, decompression, SHA-256. Used by the codec workers and by
 * `bkp repair`, which checks the few envelopes it acts on in place.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { FLAG_ZSTD, openEnvelope } from './envelope.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;
let dctx: InstanceType<typeof zstd.DCtx> | undefined;

/** Decodes `envelope` into `dest` and checks it; returns what is wrong, or undefined. */
export function checkChunk(envelope: Uint8Array, dest: Buffer, expectId: Uint8Array, plainLength: number): string | undefined {
  let env;
  try {
    env = openEnvelope(envelope);
  } catch (e) {
    return (e as Error).message;
  }
  const { header, payload } = env;
  if (!header.id.equals(expectId)) return 'envelope holds a different chunk than the index names';
  if (header.plainLength !== plainLength) return `chunk length ${header.plainLength} differs from the index (${plainLength})`;
  const out = dest.subarray(0, plainLength);
  if (header.flags & FLAG_ZSTD) {
    try {
      dctx ??= new zstd.DCtx();
      const n = dctx.decompress(out, payload);
      if (n !== plainLength) return `chunk decompressed to ${n} bytes, expected ${plainLength}`;
    } catch (e) {
      return `chunk does not decompress: ${(e as Error).message}`;
    }
  } else {
    payload.copy(out);
  }
  if (!createHash('sha256').update(out).digest().equals(expectId)) return 'chunk content does not match its SHA-256';
  return undefined;
}
