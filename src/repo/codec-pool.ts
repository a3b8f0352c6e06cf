/**
 * A pool of codec workers (one per core by default). Callers hand over a buffer and get it back
 * with the result; the pool never copies chunk data.
 */
import { Worker } from 'node:worker_threads';
import * as os from 'node:os';
import type { WorkerReply, WorkerRequest } from './codec-protocol.js';

export interface SealResult {
  buf: ArrayBuffer;
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

  /** Hash, detect zeros and (unless the id equals `hint`) compress and seal one chunk. */
  async seal(buf: ArrayBuffer, offset: number, length: number, level: number, hint?: Buffer): Promise<SealResult> {
    const req: WorkerRequest = { op: 'seal', seq: ++this.seq, buf, offset, length, level };
    if (hint) req.hint = new Uint8Array(hint);
    const r = (await this.send(req, [buf])) as Extract<WorkerReply, { op: 'seal' }>;
    return {
      buf: r.buf,
      zero: r.zero,
      id: r.id ? Buffer.from(r.id) : undefined,
      envelope: r.envelope ? Buffer.from(r.envelope) : undefined,
    };
  }

  /** Check, decompress and verify one envelope into `dest` at `destOffset`. The envelope's buffer is consumed. */
  async open(envelope: ArrayBuffer, dest: ArrayBuffer, destOffset: number, expectId: Buffer, plainLength: number): Promise<OpenResult> {
    const idCopy = new Uint8Array(expectId).buffer;
    const r = (await this.send({ op: 'open', seq: ++this.seq, envelope, dest, destOffset, expectId: idCopy, plainLength }, [envelope, dest, idCopy])) as Extract<
      WorkerReply,
      { op: 'open' }
    >;
    return { dest: r.dest, error: r.error };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
