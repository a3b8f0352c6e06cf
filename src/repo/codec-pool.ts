/**
 * A pool of codec workers (one per core by default). Callers hand over a buffer and get it back
 * with the result; the pool never copies chunk data.
 */
import { Worker } from 'node:worker_threads';
import * as os from 'node:os';
import type { WorkerReply, WorkerRequest } from './codec-protocol.js';

export interface SealResult {
  buf: ArrayBuffer;
  /** The plaintext is all zeros (sealed all the same with keepZero). */
  zero: boolean;
  /** SHA-256 of the plaintext (absent for zero chunks). */
  id?: Buffer;
  /** The sealed envelope; absent when zero or when the id matched the hint. */
  envelope?: Buffer;
}

export interface OpenResult {
  dest: ArrayBuffer;
  error: string | undefined;
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
  worker: number;
}

export class CodecPool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failed: Error | undefined;

  constructor(size = Math.max(1, os.availableParallelism?.() ?? os.cpus().length)) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./codec-worker.js', import.meta.url));
      w.on('message', (r: WorkerReply) => {
        const p = this.pending.get(r.seq);
        if (!p) return;
        this.pending.delete(r.seq);
        this.load[p.worker]!--;
        p.resolve(r);
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`codec worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.load.push(0);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private send(req: WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    let best = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[best]!) best = i;
    this.load[best]!++;
    return new Promise((resolve, reject) => {
      this.pending.set(req.seq, { resolve, reject, worker: best });
      this.workers[best]!.postMessage(req, transfer);
    });
  }

  /**
   * Hash, detect zeros and (unless the id equals `hint`) compress and seal one chunk. With
   * `keepZero` a chunk of zeros is sealed too (a patch of zeros over data is data).
   */
  async seal(buf: ArrayBuffer, offset: number, length: number, level: number, hint?: Buffer, keepZero = false): Promise<SealResult> {
    const req: WorkerRequest = { op: 'seal', seq: ++this.seq, buf, offset, length, level };
    if (hint) req.hint = new Uint8Array(hint);
    if (keepZero) req.keepZero = true;
    const r = (await this.send(req, [buf])) as Extract<WorkerReply, { op: 'seal' }>;
    return {
      buf: r.buf,
      zero: r.zero,
      id: r.id ? Buffer.from(r.id) : undefined,
      envelope: r.envelope ? Buffer.from(r.envelope) : undefined,
    };
  }

  /**
   * Check, decompress and verify the envelope at `source[at, at + length)` into `dest` at
   * `destOffset`. `source` holds a whole pack read (see SharedReads): workers read it in place.
   */
  async open(source: SharedArrayBuffer, at: number, length: number, dest: ArrayBuffer, destOffset: number, expectId: Buffer, plainLength: number): Promise<OpenResult> {
    const req: WorkerRequest = { op: 'open', seq: ++this.seq, source, at, length, dest, destOffset, expectId: new Uint8Array(expectId), plainLength };
    const r = (await this.send(req, [dest])) as Extract<WorkerReply, { op: 'open' }>;
    return { dest: r.dest, error: r.error };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

/**
 * Memory for bytes read from packs that the codec workers read in place (no allocation and copy
 * per chunk), reused from read to read (a fresh 16 MiB buffer costs thousands of page faults).
 * A target reads into it directly (`acquire`, then Target.get with `into`), or bytes already read
 * are copied in (`share`). A buffer goes back with `release` only once no worker reads it any more.
 */
export class SharedReads {
  private readonly free: SharedArrayBuffer[] = [];

  constructor(
    private readonly keep: number,
    private readonly minSize = 16 * 1024 * 1024,
  ) {}

  acquire(size: number): SharedArrayBuffer {
    const i = this.free.findIndex((b) => b.byteLength >= size);
    return i >= 0 ? this.free.splice(i, 1)[0]! : new SharedArrayBuffer(Math.max(size, this.minSize));
  }

  share(data: Uint8Array): SharedArrayBuffer {
    const sab = this.acquire(data.length);
    new Uint8Array(sab).set(data);
    return sab;
  }

  release(sab: SharedArrayBuffer): void {
    if (this.free.length < this.keep) this.free.push(sab);
  }
}
