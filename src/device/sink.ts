/**
 * Where a restore writes: a block device or an image file, opened only after the checks that
 * keep a user from overwriting the wrong thing (size, in use, existing data without --force).
 *
 * An image file is written under a temporary name beside the target (`.NAME.bkp-partial-PID`)
 * and renamed onto the target only when it is complete and synced: a restore that fails or is
 * stopped leaves no image at the target path (and an existing one as it was). A block device is
 * written in place: a failed restore leaves a partial image there.
 */
import { promises as fs, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { deviceFacts } from './facts.js';
import { deviceInUse } from './mounts.js';
import { probeSignature, PROBE_BYTES } from './probe.js';
import { fromSystemError, isSystemError, TargetHasDataError, TargetInUseError, TargetTooSmallError, DeviceMissingError } from '../errors.js';
import { native } from '../native/index.js';
import { isAligned, openDirect } from './direct-io.js';
import { syncDir } from '../storage/local/local-target.js';

export interface RestoreSink {
  path: string;
  kind: 'block' | 'file';
  /** Bytes the target can hold (the file grows; a device does not). */
  capacity: number;
  write(buf: Buffer, length: number, position: number): Promise<void>;
  /**
   * Make a range read back as zeros, as cheaply as the target allows. `overwrite`: the range may
   * already hold written bytes (a fresh image file's untouched ranges are zeros already).
   */
  zero(position: number, length: number, opts?: { overwrite?: boolean }): Promise<void>;
  sync(): Promise<void>;
  /**
   * Makes the written image the target's, after sync: an image file's size is checked and its
   * temporary file renamed onto the target path (the directory synced). Nothing to do for a device.
   */
  commit(): Promise<void>;
  /** Closes the target; an image file not committed is removed. */
  close(): Promise<void>;
  /**
   * Removes an uncommitted image file without waiting for the writes in flight (a signal's
   * cleanup, when one of them may never end). Nothing to do for a device.
   */
  discard(): Promise<void>;
}

/** The temporary name an image file is restored under, in the target's directory. */
export function partialImagePath(target: string, pid = process.pid): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.bkp-partial-${pid}`);
}

/**
 * Removes the partial images of `final` left by restores that died (kill -9, power loss): those
 * whose process no longer runs. Only for a caller that holds the target's path lock, so that no
 * live restore can own one. Returns the paths removed.
 */
export async function removeStalePartials(final: string): Promise<string[]> {
  const prefix = `.${path.basename(final)}.bkp-partial-`;
  const removed: string[] = [];
  for (const name of await fs.readdir(path.dirname(final)).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length)) : NaN;
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isRunning(pid)) continue;
    const p = path.join(path.dirname(final), name);
    await fs.rm(p, { force: true });
    removed.push(p);
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return !isSystemError(e, 'ESRCH');
  }
}

/**
 * The path a restore target resolves to: an existing one's real path (a symlink is followed, so
 * the rename replaces the file it names), else the real directory and the name.
 */
export async function finalTargetPath(target: string): Promise<string> {
  const real = await fs.realpath(target).catch(() => null);
  if (real) return real;
  const dir = await fs.realpath(path.dirname(path.resolve(target))).catch(() => path.dirname(path.resolve(target)));
  return path.join(dir, path.basename(target));
}

const ZERO_BLOCK = Buffer.alloc(4 * 1024 * 1024);
/** linux/falloc.h */
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;

async function writeAll(fh: fs.FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(buf, done, length - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write at byte ${position + done} made no progress`);
    done += bytesWritten;
  }
}

async function writeZeros(fh: fs.FileHandle, position: number, length: number): Promise<void> {
  for (let o = 0; o < length; o += ZERO_BLOCK.length) await writeAll(fh, ZERO_BLOCK, Math.min(ZERO_BLOCK.length, length - o), position + o);
}

export async function openRestoreSink(target: string, size: number, force: boolean): Promise<RestoreSink> {
  let exists = true;
  try {
    await fs.lstat(target);
  } catch (e) {
    if (!isSystemError(e, 'ENOENT')) throw fromSystemError(e, 'restore target', target);
    exists = false;
  }
  if (!exists) {
    const dir = path.dirname(path.resolve(target));
    const st = await fs.stat(dir).catch(() => null);
    if (!st?.isDirectory()) throw new DeviceMissingError(`the directory of restore target ${target} does not exist`);
    return openImageFile(target, await finalTargetPath(target), size);
  }
  const facts = await deviceFacts(target, 'restore target');
  if (facts.kind === 'file') {
    if (facts.size > 0 && !force) {
      throw new TargetHasDataError(`restore target ${target} is an existing file of ${facts.size} bytes; pass --force to overwrite it`);
    }
    return openImageFile(target, await finalTargetPath(target), size);
  }
  if (facts.size < size) {
    throw new TargetTooSmallError(`restore target ${target} holds ${facts.size} bytes but the backup needs ${size}`);
  }
  const busy = await deviceInUse(facts.dev!);
  if (busy) throw new TargetInUseError(`restore target ${target} is in use: ${busy}`);
  let fh: fs.FileHandle;
  try {
    // O_EXCL on a block device: fails with EBUSY if the kernel holds it (mounted, swap, dm, md)
    fh = await fs.open(target, fsc.O_RDWR | fsc.O_EXCL);
  } catch (e) {
    if (isSystemError(e, 'EBUSY')) throw new TargetInUseError(`restore target ${target} is in use (mounted or held by the kernel)`);
    throw fromSystemError(e, 'restore target', target);
  }
  try {
    if (!force) {
      const head = Buffer.alloc(Math.min(PROBE_BYTES, facts.size));
      await fh.read(head, 0, head.length, 0);
      const sig = probeSignature(head);
      if (sig) {
        throw new TargetHasDataError(`restore target ${target} holds a ${sig.type} signature${sig.uuid ? ` (UUID ${sig.uuid})` : ''}; pass --force to overwrite it`);
      }
    }
  } catch (e) {
    await fh.close();
    throw e;
  }
  const direct = await openDirect(target, fsc.O_RDWR).catch(() => null);
  const block = Math.max(512, facts.logicalBlockSize);
  return {
    path: target,
    kind: 'block',
    capacity: facts.size,
    write: (b, l, p) => writeAll(direct && isAligned(b, l, p, block) ? direct : fh, b, l, p),
    async zero(position, length) {
      try {
        await native().zeroOut(fh.fd, position, length);
      } catch (e) {
        // not every device supports BLKZEROOUT: write the zeros then
        if (!isSystemError(e, 'EOPNOTSUPP') && !isSystemError(e, 'ENOTTY') && !isSystemError(e, 'EINVAL')) throw e;
        await writeZeros(fh, position, length);
      }
    },
    sync: () => fh.sync(),
    commit: async () => {},
    async close() {
      await direct?.close();
      await fh.close();
    },
    discard: async () => {},
  };
}

async function openImageFile(target: string, final: string, size: number): Promise<RestoreSink> {
  const partial = partialImagePath(final);
  let fh: fs.FileHandle;
  try {
    fh = await createPartial(partial);
    // a file of the image's size that is all hole: zero chunks then cost nothing
    await fh.truncate(size);
  } catch (e) {
    await fs.rm(partial, { force: true }).catch(() => {});
    throw fromSystemError(e, 'restore target', target);
  }
  let open = true;
  let committed = false;
  const closeOnce = async () => {
    if (!open) return;
    open = false;
    await fh.close();
  };
  return {
    path: target,
    kind: 'file',
    capacity: Number.MAX_SAFE_INTEGER,
    write: (b, l, p) => writeAll(fh, b, l, p),
    async zero(position, length, opts) {
      // the file was truncated: every byte not written reads as zero already
      if (!opts?.overwrite) return;
      try {
        await native().fallocate(fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, position, length);
      } catch (e) {
        if (!isSystemError(e, 'EOPNOTSUPP')) throw e;
        await writeZeros(fh, position, length);
      }
    },
    sync: () => fh.sync(),
    async commit() {
      try {
        const st = await fh.stat();
        if (st.size !== size) throw new Error(`the restored image ${partial} has ${st.size} bytes, not ${size}`);
        await closeOnce();
        await fs.rename(partial, final);
        committed = true;
        await syncDir(path.dirname(final));
      } catch (e) {
        throw fromSystemError(e, 'restore target', target);
      }
    },
    async close() {
      await closeOnce();
      if (!committed) await fs.rm(partial, { force: true });
    },
    async discard() {
      if (!committed) await fs.rm(partial, { force: true });
    },
  };
}

/** Creates the temporary file; one left by a dead process that had this pid is replaced. */
async function createPartial(partial: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(partial, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (e) {
    if (!isSystemError(e, 'EEXIST')) throw e;
    await fs.rm(partial, { force: true });
    return fs.open(partial, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  }
}
