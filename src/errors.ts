/**
 * Typed user-facing errors and the one exit-code table.
 *
 * A BkpError is something a user can act on: it carries one line of words and an exit code.
 * Anything else that escapes is a bug and is reported as such (exit 1, with a stack trace only
 * under BKP_DEBUG=1).
 */

export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  PARTIAL: 3,
  /** The command's work is done and stored (a backup committed), but a task after it failed (metrics file, bkp run's prune). */
  WARNINGS: 4,
  REPO_MISSING: 10,
  LOCKED: 11,
  CORRUPT: 12,
  DEVICE_MISSING: 13,
  NOT_A_DEVICE: 14,
  PERMISSION: 15,
  TARGET_TOO_SMALL: 16,
  TARGET_IN_USE: 17,
  TARGET_HAS_DATA: 18,
  NO_SPACE: 19,
  BACKUP_NOT_FOUND: 20,
  BLKSNAP_UNAVAILABLE: 21,
  SNAPSHOT_FAILED: 22,
  CHAIN_BROKEN: 23,
  STORAGE_UNREACHABLE: 24,
  STORAGE_DENIED: 25,
  CONFIG_INVALID: 26,
  REPO_EXISTS: 27,
  BUCKET_MISSING: 28,
  OBJECT_ARCHIVED: 29,
  INTERRUPTED: 130,
  TERMINATED: 143,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class BkpError extends Error {
  readonly exitCode: ExitCodeValue;
  /** Whether running the same command again may succeed (network, lock, transient I/O). */
  readonly retryable: boolean;
  constructor(message: string, exitCode: ExitCodeValue, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.retryable = opts.retryable ?? false;
  }
}

function kind(name: string, code: ExitCodeValue, retryable = false) {
  return class extends BkpError {
    constructor(message: string, opts: { cause?: unknown } = {}) {
      super(message, code, { retryable, ...opts });
      this.name = name;
    }
  };
}

export const UsageError = kind('UsageError', ExitCode.USAGE);
export const RepoMissingError = kind('RepoMissingError', ExitCode.REPO_MISSING);
export const RepoExistsError = kind('RepoExistsError', ExitCode.REPO_EXISTS);
export const LockedError = kind('LockedError', ExitCode.LOCKED, true);
export const CorruptError = kind('CorruptError', ExitCode.CORRUPT);
export const DeviceMissingError = kind('DeviceMissingError', ExitCode.DEVICE_MISSING);
export const NotADeviceError = kind('NotADeviceError', ExitCode.NOT_A_DEVICE);
export const PermissionError = kind('PermissionError', ExitCode.PERMISSION);
export const TargetTooSmallError = kind('TargetTooSmallError', ExitCode.TARGET_TOO_SMALL);
export const TargetInUseError = kind('TargetInUseError', ExitCode.TARGET_IN_USE);
export const TargetHasDataError = kind('TargetHasDataError', ExitCode.TARGET_HAS_DATA);
export const NoSpaceError = kind('NoSpaceError', ExitCode.NO_SPACE);
export const BackupNotFoundError = kind('BackupNotFoundError', ExitCode.BACKUP_NOT_FOUND);
export const BlksnapUnavailableError = kind('BlksnapUnavailableError', ExitCode.BLKSNAP_UNAVAILABLE);
export const SnapshotFailedError = kind('SnapshotFailedError', ExitCode.SNAPSHOT_FAILED);
export const ChainBrokenError = kind('ChainBrokenError', ExitCode.CHAIN_BROKEN);
export const StorageUnreachableError = kind('StorageUnreachableError', ExitCode.STORAGE_UNREACHABLE, true);
export const StorageDeniedError = kind('StorageDeniedError', ExitCode.STORAGE_DENIED);
export const ConfigInvalidError = kind('ConfigInvalidError', ExitCode.CONFIG_INVALID);
export const BucketMissingError = kind('BucketMissingError', ExitCode.BUCKET_MISSING);
export const ObjectArchivedError = kind('ObjectArchivedError', ExitCode.OBJECT_ARCHIVED);
export const InterruptedError = kind('InterruptedError', ExitCode.INTERRUPTED);

/** A Node system error (fs, native addon): has an errno name in `code`. */
export interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export function isSystemError(e: unknown, code?: string): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && (code === undefined || (e as SystemError).code === code);
}

/**
 * Turn a system error met while touching a user-named path into the user's words.
 * `what` says which role the path plays ("device", "restore target", "repository").
 */
export function fromSystemError(e: unknown, what: string, path: string): unknown {
  if (!isSystemError(e)) return e;
  switch (e.code) {
    case 'ENOENT':
      return what === 'repository'
        ? new RepoMissingError(`repository ${path} does not exist (create it with: bkp init --repo ${path})`, { cause: e })
        : new DeviceMissingError(`${what} ${path} does not exist`, { cause: e });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new PermissionError(`permission denied on ${what} ${path} (${e.code}); run bkp as root or fix the permissions`, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new NoSpaceError(`no space left on ${what} ${path}`, { cause: e });
    case 'ENOTDIR':
      return new NotADeviceError(`${what} ${path}: a part of the path is a file, not a directory`, { cause: e });
    case 'EISDIR':
      return new NotADeviceError(`${what} ${path} is a directory, not a block device or file`, { cause: e });
    case 'ELOOP':
      return new NotADeviceError(`${what} ${path}: too many levels of symbolic links (a symbolic link loop?)`, { cause: e });
    case 'ENAMETOOLONG':
      return new UsageError(`${what} ${path.length > 100 ? `${path.slice(0, 100)}…` : path}: the path or a part of it is too long`, { cause: e });
    case 'EBUSY':
      return new TargetInUseError(`${what} ${path} is busy (in use by another program or mounted)`, { cause: e });
    default:
      return e;
  }
}
