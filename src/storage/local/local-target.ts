/**
 * A repository in a local directory. Atomic put = write a temporary file beside the object,
 * fsync it, rename (or link, for ifAbsent) into place, fsync the directory.
 * Files are created 0600 and directories 0700: a repository holds whole disks.
 */
import { promises as fs, constants as fsc, type Stats } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkKey, checkPrefix, ObjectExistsError, ObjectMissingError, type ByteRange, type ObjectInfo, type PutOptions, type Target } from '../target.js';
import { CorruptError, fromSystemError, isSystemError } from '../../errors.js';

const TMP_PREFIX = '.tmp-';

export class LocalTarget implements Target {
  readonly location: string;
  constructor(readonly root: string) {
    this.location = path.resolve(root);
  }

  private file(key: string): string {
    checkKey(key);
    return path.join(this.location, ...key.split('/'));
  }

  private async ensureDir(dir: string): Promise<void> {
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      if (!isSystemError(e, 'ENOENT')) throw fromSystemError(e, 'repository', this.location);
      // Node's recursive mkdir reports ENOSPC (or EDQUOT) as ENOENT: it stats the directory it
      // could not create. Creating the levels one by one gives the real reason.
      try {
        await mkdirEachLevel(dir);
      } catch (real) {
        throw fromSystemError(real, 'repository', this.location);
      }
    }
  }

  async put(key: string, body: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted(); // a local write is short: checked once, before it starts
    const dest = this.file(key);
    const dir = path.dirname(dest);
    await this.ensureDir(dir);
    const tmp = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const parts = body instanceof Uint8Array ? [body] : body;
    try {
      const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        // writev takes at most IOV_MAX (1024) buffers per call
        for (let i = 0; i < parts.length; i += 512) {
          const slice = parts.slice(i, i + 512);
          const want = slice.reduce((n, p) => n + p.length, 0);
          let done = 0;
          while (done < want) {
            const { bytesWritten } = await fh.writev(done === 0 ? (slice as Uint8Array[]) : skip(slice, done));
            done += bytesWritten;
          }
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (opts.ifAbsent) {
        try {
          await fs.link(tmp, dest);
        } catch (e) {
          if (isSystemError(e, 'EEXIST')) throw new ObjectExistsError(key, this.location);
          throw e;
        } finally {
          await fs.rm(tmp, { force: true });
        }
      } else {
        await fs.rename(tmp, dest);
      }
      await syncDir(dir);
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw fromSystemError(e, 'repository', this.location);
    }
  }

  async get(key: string, range?: ByteRange, into?: Uint8Array): Promise<Buffer> {
    if (into && (!range || into.length < range.length)) throw new Error('get into a buffer needs a range that fits it');
    const f = this.file(key);
    let fh;
    try {
      // O_NONBLOCK: opening a FIFO put in place of an object must not wait for a writer (a
      // thread of the pool would block for good, and the process could not exit)
      fh = await fs.open(f, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch (e) {
      if (isSystemError(e, 'ENOENT')) throw new ObjectMissingError(key, this.location);
      if (isSystemError(e, 'ENXIO')) throw notAFile(key, this.location, 'a socket'); // what open gives for a socket
      throw fromSystemError(e, 'repository', this.location);
    }
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw new ObjectMissingError(key, this.location); // a prefix of other keys
      if (!st.isFile()) throw notAFile(key, this.location, fileKind(st));
      if (!range) return await fh.readFile();
      const buf = into ? Buffer.from(into.buffer, into.byteOffset, range.length) : Buffer.allocUnsafe(range.length);
      let done = 0;
      while (done < range.length) {
        const { bytesRead } = await fh.read(buf, done, range.length - done, range.offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === range.length ? buf : buf.subarray(0, done);
    } finally {
      await fh.close();
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await fs.stat(this.file(key));
      return st.isFile() ? { key, size: st.size, mtimeMs: st.mtimeMs } : undefined;
    } catch (e) {
      if (isSystemError(e, 'ENOENT') || isSystemError(e, 'ENOTDIR')) return undefined;
      throw fromSystemError(e, 'repository', this.location);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    // walk only the directories the prefix can reach
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    yield* this.walk(base, prefix);
  }

  private async *walk(rel: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries;
    try {
      entries = await fs.readdir(rel ? path.join(this.location, ...rel.split('/')) : this.location, { withFileTypes: true });
    } catch (e) {
      if (isSystemError(e, 'ENOENT') || isSystemError(e, 'ENOTDIR')) return;
      throw fromSystemError(e, 'repository', this.location);
    }
    for (const d of entries) {
      if (d.name.startsWith(TMP_PREFIX)) continue;
      const key = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || prefix === '') yield* this.walk(key, prefix);
      } else if (d.isFile() && key.startsWith(prefix)) {
        const st = await fs.stat(path.join(this.location, ...key.split('/'))).catch(() => undefined);
        if (st) yield { key, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  async *listDirectories(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    if (!prefix.endsWith('/')) throw new Error(`listDirectories needs a prefix ending with '/' (got ${JSON.stringify(prefix)})`);
    let entries;
    try {
      entries = await fs.readdir(path.join(this.location, ...prefix.slice(0, -1).split('/')), { withFileTypes: true });
    } catch (e) {
      if (isSystemError(e, 'ENOENT') || isSystemError(e, 'ENOTDIR')) return;
      throw fromSystemError(e, 'repository', this.location);
    }
    for (const d of entries) if (d.isDirectory() && !d.name.startsWith(TMP_PREFIX)) yield `${prefix}${d.name}`;
  }

  async delete(key: string): Promise<void> {
    const f = this.file(key);
    try {
      await fs.unlink(f);
    } catch (e) {
      // a directory is a prefix of other keys, not an object
      if (isSystemError(e, 'ENOENT') || isSystemError(e, 'EISDIR') || isSystemError(e, 'ENOTDIR')) return;
      throw fromSystemError(e, 'repository', this.location);
    }
    await syncDir(path.dirname(f));
  }

  /**
   * Temporary files left by a crash in the middle of a put, and the empty directories of backups
   * (`backups/<id>/`) that a failed commit or a prune left. Called under the repository lock, so no
   * writer is about to put an index into one of them.
   */
  async removeLeftovers(dryRun: boolean, gone: ReadonlySet<string> = new Set()): Promise<number> {
    let n = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const d of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = path.join(dir, d.name);
        if (d.isDirectory()) await walk(p);
        else if (d.name.startsWith(TMP_PREFIX)) {
          n++;
          if (!dryRun) await fs.rm(p, { force: true });
        }
      }
    };
    await walk(this.location);
    const backups = path.join(this.location, 'backups');
    for (const d of await fs.readdir(backups, { withFileTypes: true }).catch(() => [])) {
      if (!d.isDirectory()) continue;
      const inside = await fs.readdir(path.join(backups, d.name)).catch(() => null);
      // (a dry run has not removed the temporary files, nor the objects it treats as gone, such as
      // the indexes a previewed prune removes: the directory counts if that is all it holds)
      if (!inside || !inside.every((f) => f.startsWith(TMP_PREFIX) || gone.has(`backups/${d.name}/${f}`))) continue;
      if (!dryRun) {
        const removed = await fs.rmdir(path.join(backups, d.name)).then(() => true, () => false);
        if (!removed) continue;
      }
      n++;
    }
    return n;
  }
}

/** Something other than a regular file where an object should be: damage, never something to read. */
function notAFile(key: string, location: string, what: string): Error {
  return new CorruptError(`repository object ${key} in ${location} is ${what}, not a regular file: the repository is damaged`);
}

function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  return 'a special file';
}

function skip(parts: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    if (n >= p.length) { n -= p.length; continue; }
    out.push(n > 0 ? p.subarray(n) : p);
    n = 0;
  }
  return out;
}

/** mkdir of every missing level of `dir`, top down, each non-recursive: its error is the real one. */
async function mkdirEachLevel(dir: string): Promise<void> {
  const levels: string[] = [];
  for (let d = path.resolve(dir); d !== path.dirname(d); d = path.dirname(d)) levels.unshift(d);
  for (const d of levels) {
    try {
      await fs.mkdir(d, { mode: 0o700 });
    } catch (e) {
      if (!isSystemError(e, 'EEXIST')) throw e;
    }
  }
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
