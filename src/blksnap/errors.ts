/**
 * blksnap's errno values in the user's words (shared/docs/blksnap.md, "Errors seen on the real
 * module"). The classes refine the kinds in src/errors.ts so exit codes stay in one table.
 */
import {
  BlksnapUnavailableError,
  ChainBrokenError,
  PermissionError,
  SnapshotFailedError,
  isSystemError,
} from '../errors.js';
import type { IoctlName } from './abi.js';

/** The device has no tracker (never snapshotted since the module loaded, or removed): a full backup is needed. */
export class NotTrackedError extends ChainBrokenError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'NotTrackedError';
  }
}

/** The snapshot id is not known to the module (destroyed, replaced, or module reloaded). */
export class UnknownSnapshotError extends SnapshotFailedError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'UnknownSnapshotError';
  }
}

/** A device is already part of another snapshot. */
export class DeviceInSnapshotError extends SnapshotFailedError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'DeviceInSnapshotError';
  }
}

/** READ_CBT_MAP outside a taken snapshot of the device (EPERM). */
export class CbtMapUnavailableError extends SnapshotFailedError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'CbtMapUnavailableError';
  }
}

/** The difference storage overflowed (corrupted event): the device's image is not trustworthy. */
export class SnapshotOverflowError extends SnapshotFailedError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'SnapshotOverflowError';
  }
}

/** The difference storage directory cannot be used (its filesystem's extents are not plain sectors). */
export class DiffStorageUnsupportedError extends SnapshotFailedError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'DiffStorageUnsupportedError';
  }
}

export function moduleNotLoaded(tried: readonly string[]): InstanceType<typeof BlksnapUnavailableError> {
  return new BlksnapUnavailableError(
    `blksnap module is not loaded (modprobe blksnap, or install blksnap); looked for ${tried.join(', ')}`,
  );
}

/**
 * The typed error for a failed control. `what` names the object (device path or snapshot id) for
 * the message. Errors that are not system errors are bugs and pass through.
 */
export function blksnapError(e: unknown, op: IoctlName, what: string): unknown {
  if (!isSystemError(e)) return e;
  const opts = { cause: e };
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      if (op === 'TRACKER_READ_CBT_MAP') {
        return new CbtMapUnavailableError(`the CBT map of ${what} can be read only while a snapshot of it is taken`, opts);
      }
      return new PermissionError(`blksnap ${op.toLowerCase()} on ${what} was refused (${e.code}): bkp needs root`, opts);
    case 'EBUSY':
      return new DeviceInSnapshotError(`${what} is already in a blksnap snapshot (see bkp status; bkp snapshot cleanup removes ones left by bkp)`, opts);
    case 'ENODEV':
    case 'ESRCH':
      if (op === 'SNAPSHOT_COLLECT_IMAGES' && e.code === 'ENODEV') {
        return new SnapshotFailedError(`snapshot ${what} has no images: it was not taken yet`, opts);
      }
      return new UnknownSnapshotError(`blksnap snapshot ${what} does not exist (destroyed, replaced by another snapshot of the same device, or the module was reloaded)`, opts);
    case 'ENODATA':
      if (op === 'TRACKER_READ_CBT_MAP' || op === 'TRACKER_REMOVE' || op === 'TRACKER_MARK_DIRTY_BLOCKS') {
        return new NotTrackedError(`${what} is not tracked by blksnap (no snapshot of it since the module was loaded): a full backup is needed`, opts);
      }
      return new SnapshotFailedError(`blksnap ${op.toLowerCase()} on ${what}: no data (${e.code})`, opts);
    case 'EFAULT':
      if (op === 'SNAPSHOT_TAKE') {
        return new SnapshotFailedError(`taking snapshot ${what} failed: not enough difference storage was appended before take; the module dropped the snapshot`, opts);
      }
      return new SnapshotFailedError(`blksnap ${op.toLowerCase()} on ${what} failed: bad address (EFAULT)`, opts);
    case 'ENOENT':
    case 'ENXIO':
      return new BlksnapUnavailableError(`blksnap ${op.toLowerCase()} on ${what}: the device or module went away (${e.code})`, opts);
    default:
      return new SnapshotFailedError(`blksnap ${op.toLowerCase()} on ${what} failed: ${e.message}`, opts);
  }
}
