/**
 * A Target that keeps its objects in memory: the reference of the Target contract (it runs the
 * conformance suite like the real targets) and the store of the pipeline unit tests, which then
 * need neither root, devices nor disk space for a repository. Test code only, like restic's mem
 * backend: bkp itself has no use for a repository that dies with the process.
 */
import { checkKey, checkPrefix, ObjectExistsError, ObjectMissingError, type ByteRange, type ObjectInfo, type PutOptions, type Target } from '../../src/storage/target.js';

interface Stored {
  data: Buffer;
  mtimeMs: number;
}

export class MemoryTarget implements Target {
  private readonly objects = new Map<string, Stored>();

  constructor(readonly location = 'memory:') {}

  async put(key: string, body: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    checkKey(key);
    // a copy: the caller may reuse its buffers as soon as put resolves
    const parts = body instanceof Uint8Array ? [body] : body;
    const data = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
    await Promise.resolve(); // like every real target, put completes asynchronously
    opts.signal?.throwIfAborted(); // another upload of the run failed: store nothing
    if (opts.ifAbsent && this.objects.has(key)) throw new ObjectExistsError(key, this.location);
    this.objects.set(key, { data, mtimeMs: Date.now() });
  }

  async get(key: string, range?: ByteRange, into?: Uint8Array): Promise<Buffer> {
    if (into && (!range || into.length < range.length)) throw new Error('get into a buffer needs a range that fits it');
    checkKey(key);
    await Promise.resolve();
    const o = this.objects.get(key);
    if (!o) throw new ObjectMissingError(key, this.location);
    const bytes = range ? o.data.subarray(range.offset, range.offset + range.length) : o.data;
    if (!into) return Buffer.from(bytes);
    const out = Buffer.from(into.buffer, into.byteOffset, bytes.length);
    bytes.copy(out);
    return out;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    await Promise.resolve();
    const o = this.objects.get(key);
    return o && { key, size: o.data.length, mtimeMs: o.mtimeMs };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    // a snapshot of the keys: puts and deletes during the listing do not disturb it
    for (const [key, o] of [...this.objects]) {
      if (key.startsWith(prefix)) yield { key, size: o.data.length, mtimeMs: o.mtimeMs };
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await Promise.resolve();
    this.objects.delete(key);
  }

  /** The number of objects (for tests that count what a command left). */
  get size(): number {
    return this.objects.size;
  }
}
