/**
 * Worker thread for the CPU work of backup and restore: SHA-256, zero detection, zstd, envelopes.
 * Buffers move between threads by transfer, never by copy, and go back to the caller's pool.
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { encodeEnvelopeHeader, ENVELOPE_HEADER_SIZE, FLAG_ZSTD } from './envelope.js';
import { checkChunk } from './chunk-check.js';
import type { WorkerRequest, WorkerReply } from './codec-protocol.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;
const cctx = new zstd.CCtx();
let scratch = Buffer.alloc(0);
let zeros = Buffer.alloc(0);

function isZero(b: Buffer): boolean {
  if (zeros.length < b.length) zeros = Buffer.alloc(b.length);
  return b.equals(zeros.subarray(0, b.length));
}

function seal(plain: Buffer, level: number, hint: Uint8Array | undefined, keepZero: boolean): Omit<Extract<WorkerReply, { op: 'seal' }>, 'seq' | 'buf'> {
  const zero = isZero(plain);
  if (zero && !keepZero) return { op: 'seal', zero: true };
  const digest = createHash('sha256').update(plain).digest();
  const id = new Uint8Array(32);
  id.set(digest);
  if (hint && digest.equals(hint)) return { op: 'seal', zero: false, id: id.buffer };
  const bound = zstd.compressBound(plain.length);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(bound);
  const n = cctx.compress(scratch, plain, level);
  const compressed = n < plain.length;
  const payload = compressed ? scratch.subarray(0, n) : plain;
  const env = new Uint8Array(ENVELOPE_HEADER_SIZE + payload.length);
  env.set(encodeEnvelopeHeader(digest, compressed ? FLAG_ZSTD : 0, plain.length, payload), 0);
  env.set(payload, ENVELOPE_HEADER_SIZE);
  return { op: 'seal', zero, id: id.buffer, envelope: env.buffer };
}

parentPort!.on('message', (m: WorkerRequest) => {
  if (m.op === 'seal') {
    const r = seal(Buffer.from(m.buf, m.offset, m.length), m.level, m.hint, m.keepZero === true);
    const reply: WorkerReply = { ...r, seq: m.seq, buf: m.buf };
    const transfer: ArrayBuffer[] = [m.buf];
    if (r.id) transfer.push(r.id);
    if (r.envelope) transfer.push(r.envelope);
    parentPort!.postMessage(reply, transfer);
  } else {
    const dest = Buffer.from(m.dest, m.destOffset);
    const error = checkChunk(new Uint8Array(m.source, m.at, m.length), dest, m.expectId, m.plainLength);
    const reply: WorkerReply = { op: 'open', seq: m.seq, dest: m.dest, error };
    parentPort!.postMessage(reply, [m.dest]);
  }
});
