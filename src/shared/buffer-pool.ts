/**
 * A fixed set of equal-sized, memory-aligned buffers: bounds the chunks in flight whatever the
 * device size, and lets devices be read and written with O_DIRECT. Buffers travel to workers
 * and back by transfer; the aligned offset is recomputed on each acquire (the memory never moves).
 */
import { native } from '../native/index.js';

export const IO_ALIGNMENT = 4096;

export interface PoolBuffer {
  ab: ArrayBuffer;
  /** Where the aligned region starts in `ab`. */
  offset: number;
}

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly waiters: Array<{ resolve: (b: PoolBuffer) => void; reject: (e: unknown) => void }> = [];
  private aborted: unknown;

  constructor(readonly bufferSize: number, count: number) {
    for (let i = 0; i < count; i++) this.free.push(new ArrayBuffer(bufferSize + IO_ALIGNMENT));
  }

  private wrap(ab: ArrayBuffer): PoolBuffer {
    return { ab, offset: native().alignedOffset(ab, IO_ALIGNMENT) };
  }

  acquire(): Promise<PoolBuffer> {
    if (this.aborted !== undefined) return Promise.reject(this.aborted);
    const b = this.free.pop();
    if (b) return Promise.resolve(this.wrap(b));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  release(b: ArrayBuffer): void {
    if (b.byteLength !== this.bufferSize + IO_ALIGNMENT) throw new Error('buffer returned to the wrong pool');
    const w = this.waiters.shift();
    if (w) w.resolve(this.wrap(b));
    else this.free.push(b);
  }

  /** Fails every waiting and future acquire (a buffer was lost with a dead worker). */
  abort(e: unknown): void {
    this.aborted ??= e ?? new Error('buffer pool aborted');
    for (const w of this.waiters.splice(0)) w.reject(this.aborted);
  }
}

export function view(b: PoolBuffer, length: number): Buffer {
  return Buffer.from(b.ab, b.offset, length);
}
