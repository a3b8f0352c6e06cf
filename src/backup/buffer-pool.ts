/** A fixed set of equal-sized buffers: bounds the chunks in flight whatever the device size. */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly waiters: Array<{ resolve: (b: ArrayBuffer) => void; reject: (e: unknown) => void }> = [];
  private aborted: unknown;

  constructor(readonly bufferSize: number, count: number) {
    for (let i = 0; i < count; i++) this.free.push(new ArrayBuffer(bufferSize));
  }

  acquire(): Promise<ArrayBuffer> {
    if (this.aborted !== undefined) return Promise.reject(this.aborted);
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  release(b: ArrayBuffer): void {
    if (b.byteLength !== this.bufferSize) throw new Error('buffer returned to the wrong pool');
    const w = this.waiters.shift();
    if (w) w.resolve(b);
    else this.free.push(b);
  }

  /** Fails every waiting and future acquire (a buffer was lost with a dead worker). */
  abort(e: unknown): void {
    this.aborted ??= e ?? new Error('buffer pool aborted');
    for (const w of this.waiters.splice(0)) w.reject(this.aborted);
  }
}
