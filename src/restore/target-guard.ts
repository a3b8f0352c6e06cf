/**
 * A restore must never write onto a device that a backup is reading: through a blksnap snapshot
 * (the module holds it as an original of a snapshot) or directly (a `--no-snapshot` bkp has it
 * open). Mounted, swap and kernel-held targets are refused by the sink itself (src/device/sink.ts).
 */
import { promises as fs } from 'node:fs';
import { tryOpenBlksnap, formatUuid, sameDev } from '../blksnap/index.js';
import { backupReading } from '../device/readers.js';
import { acquireNamedLocks, deviceLockName, imagePathLockName, type DeviceLocks } from '../lock/device-lock.js';
import { BkpError, LockedError, PermissionError, TargetInUseError } from '../errors.js';

async function inSnapshot(path: string): Promise<string | null> {
  let blksnap;
  try {
    blksnap = await tryOpenBlksnap();
  } catch (e) {
    if (e instanceof BkpError) return null; // no access to the module: the other checks still apply
    throw e;
  }
  if (!blksnap) return null;
  try {
    const dev = await blksnap.devIdOf(path);
    for (const id of await blksnap.snapshots()) {
      const images = await blksnap.snapshot(id).images().catch(() => []);
      if (images.some((im) => sameDev(im.orig, dev))) {
        return `it is in blksnap snapshot ${formatUuid(id)}: a backup is reading it (if none is running: bkp snapshot cleanup)`;
      }
    }
    return null;
  } finally {
    await blksnap.close();
  }
}

/** Refuses (exit 17) a restore target that is being backed up. A target that does not exist yet passes. */
export async function refuseTargetBeingBackedUp(path: string): Promise<void> {
  const st = await fs.stat(path).catch(() => null);
  if (!st || !(st.isBlockDevice() || st.isFile())) return;
  const why = (st.isBlockDevice() ? await inSnapshot(path) : null) ?? (await backupReading(path));
  if (why) throw new TargetInUseError(`restore target ${path} is in use: ${why}`);
}

/**
 * Holds the device lock of a restore target (src/lock/device-lock.ts) for the whole restore: a
 * backup of that device or image file, or a second restore onto it, cannot start meanwhile, and
 * one that holds it already — even before it has opened the device or taken its snapshot — is
 * refused with exit 17. An image file path is also locked by its name (its directory and name),
 * whether a file is there yet or not: the image is written under a temporary name and renamed
 * last, so two restores to one new path would otherwise both run. `final` is the target's real
 * path (src/device/sink.ts finalTargetPath); `pathLocked` says that its path lock is held.
 * Without access to the lock directory (a restore to an image file by a user who is not root) the
 * checks above still apply and no lock is taken.
 */
export async function lockRestoreTarget(path: string, final: string, warn: (msg: string) => void): Promise<DeviceLocks & { pathLocked: boolean }> {
  const none = { release: async () => {}, pathLocked: false };
  const st = await fs.stat(final).catch(() => null);
  if (st && !(st.isBlockDevice() || st.isFile())) return none;
  const locks = [];
  if (st) locks.push({ what: `device ${path}`, name: await deviceLockName(final) });
  // a missing directory is the sink's to report
  const pathLock = st?.isBlockDevice() ? null : await imagePathLockName(final).catch(() => null);
  if (pathLock) locks.push({ what: `path ${path}`, name: pathLock });
  if (!locks.length) return none;
  try {
    return { ...(await acquireNamedLocks(locks, `bkp restore --to ${path}`, warn)), pathLocked: pathLock !== null };
  } catch (e) {
    if (e instanceof LockedError) throw new TargetInUseError(`restore target ${path} is in use: ${e.message}`, { cause: e });
    if (e instanceof PermissionError && !st?.isBlockDevice()) return none;
    throw e;
  }
}
