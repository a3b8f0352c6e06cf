/**
 * One bkp per device: a backup holds a local lock on each device it reads, so that two runs
 * against the same device — even with different repositories — never snapshot it at once (blksnap
 * allows one snapshot per device, and two trackers' readers would race for its CBT map).
 *
 * A device is named by what it is, not by the path used: a block device by its major:minor, an
 * image file by its filesystem device and inode, so /dev/sdb and /dev/disk/by-id/… are one device.
 * The lock itself is the repository lock's algorithm (src/repo/lock.ts: generations created with a
 * create-only write; host, pid, start time, command; a dead pid's lock is taken over with a
 * warning) on a local directory: /run/bkp/locks by default (cleared at boot), BKP_LOCK_DIR to
 * choose another. A released device lock leaves nothing behind: its objects and directory are
 * removed (when no other process came after it), so the directory does not grow with every
 * device ever backed up.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { acquireLock, type RepoLock } from '../repo/lock.js';
import { LocalTarget } from '../storage/local/local-target.js';
import { devNumOf } from '../device/mounts.js';
import { fromSystemError, isSystemError, NotADeviceError, PermissionError } from '../errors.js';

export const DEFAULT_LOCK_DIR = '/run/bkp/locks';

export function deviceLockDir(): string {
  return process.env.BKP_LOCK_DIR || DEFAULT_LOCK_DIR;
}

/** The lock name of a device: `blk-MAJOR-MINOR` or `file-DEV-INODE`. */
export async function deviceLockName(devicePath: string): Promise<string> {
  let st;
  try {
    st = await fs.stat(devicePath, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, 'device', devicePath);
  }
  if (st.isBlockDevice()) {
    const { major, minor } = devNumOf(st.rdev);
    return `blk-${major}-${minor}`;
  }
  return `file-${st.dev}-${st.ino}`;
}

export interface DeviceLocks {
  release(): Promise<void>;
}

/**
 * The lock name of an image file path, whether or not a file is there yet: its directory (by
 * filesystem device and inode) and its name. A restore holds it while it writes the image under a
 * temporary name, so that a second restore to the same path is refused before either renames.
 */
export async function imagePathLockName(filePath: string): Promise<string> {
  const dir = path.dirname(path.resolve(filePath));
  let st;
  try {
    st = await fs.stat(dir, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, 'directory', dir);
  }
  const name = createHash('sha256').update(path.basename(filePath)).digest('hex').slice(0, 16);
  return `path-${st.dev}-${st.ino}-${name}`;
}

export interface DeviceLocks {
  release(): Promise<void>;
}

/**
 * Takes the lock of every device, in a fixed order, or none: a device held by another live bkp
 * is a LockedError (exit 11) naming its pid, host and start time.
 */
export async function acquireDeviceLocks(devices: readonly string[], command: string, warn: (msg: string) => void): Promise<DeviceLocks> {
  const named = await Promise.all(devices.map(async (d) => ({ what: `device ${d}`, name: await deviceLockName(d) })));
  return acquireNamedLocks(named, command, warn);
}

/** Takes the locks named (each `what` says it in messages), in a fixed order, or none. */
export async function acquireNamedLocks(locks: ReadonlyArray<{ what: string; name: string }>, command: string, warn: (msg: string) => void): Promise<DeviceLocks> {
  const dir = deviceLockDir();
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    if (isSystemError(e, 'EACCES') || isSystemError(e, 'EROFS') || isSystemError(e, 'EPERM')) {
      throw new PermissionError(`cannot create the device lock directory ${dir} (${(e as NodeJS.ErrnoException).code}); run bkp as root or set BKP_LOCK_DIR`, { cause: e });
    }
    if (isSystemError(e, 'ENOTDIR') || isSystemError(e, 'EEXIST')) throw new NotADeviceError(`the device lock directory ${dir} is not a directory; set BKP_LOCK_DIR`, { cause: e });
    throw e;
  }
  const named = [...locks].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const held: Array<{ name: string; lock: RepoLock }> = [];
  const releaseAll = async () => {
    for (const { lock, name } of held.splice(0).reverse()) {
      await lock.release().catch(() => {});
      // the device's directory goes with its last lock object; one that is not empty belongs to
      // a newer holder and stays
      for (const d of [path.join(dir, name, 'locks'), path.join(dir, name)]) await fs.rmdir(d).catch(() => {});
    }
  };
  try {
    for (const { what, name } of named) {
      held.push({ name, lock: await acquireLock(new LocalTarget(path.join(dir, name)), command, warn, what, { removeOnRelease: true }) });
    }
  } catch (e) {
    await releaseAll();
    throw e;
  }
  return { release: releaseAll };
}
