/**
 * The storage target: the one interface every place a repository can live implements
 * (local directory, S3). Keys are '/'-separated relative paths. Every target runs the same
 * conformance suite (test/storage/conformance.ts).
 */

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification, ms since the epoch. */
  mtimeMs: number;
  /** Storage class, where the target has them (S3); undefined means the default, instantly readable. */
  storageClass?: string;
}

/** S3 storage classes whose objects must be restored (thawed) before they can be read. */
export const ARCHIVE_CLASSES: ReadonlySet<string> = new Set(['GLACIER', 'DEEP_ARCHIVE']);

export interface PutOptions {
  /** Fail with ObjectExistsError instead of replacing an existing object. */
  ifAbsent?: boolean;
  /**
   * Abandons the put when aborted (another upload of the run failed for good): it rejects
   * promptly with the signal's reason, sends nothing more, and leaves no unfinished upload.
   */
  signal?: AbortSignal;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface Target {
  /** Where this target is, for messages ("/srv/backup", "s3://bucket/prefix"). */
  readonly location: string;
  /**
   * Store an object atomically: a reader sees either the old object (or none) or the whole new
   * one, never a part; once put resolves, the object is durable.
   */
  put(key: string, body: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void>;
  /**
   * Read a whole object or a byte range of it. Missing → ObjectMissingError. With `into` (only
   * with a range; at least range.length bytes) the bytes are read into it and the result is a view
   * of it: a caller that reads much reuses its memory.
   */
  get(key: string, range?: ByteRange, into?: Uint8Array): Promise<Buffer>;
  /** Size and time of an object, or undefined when it does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with prefix, in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * The directories directly under `prefix` (a prefix ending with '/'), as keys without the
   * trailing '/', empty ones too — only on targets that have directories (not S3, where a prefix
   * exists only while objects are under it).
   */
  listDirectories?(prefix: string): AsyncIterable<string>;
  /** Remove an object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Remove what interrupted puts left behind (temporary files, unfinished uploads); returns how many. */
  removeLeftovers?(dryRun: boolean, gone?: ReadonlySet<string>): Promise<number>;
}

export class ObjectMissingError extends Error {
  readonly code = 'ENOENT';
  constructor(readonly key: string, location: string) {
    super(`object ${key} is missing from ${location}`);
  }
}

export class ObjectExistsError extends Error {
  readonly code = 'EEXIST';
  constructor(readonly key: string, location: string) {
    super(`object ${key} already exists in ${location}`);
  }
}

/** A list prefix: '' or a key-like string, possibly ending with '/'. */
export function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (!p || p.startsWith('/') || p.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new Error(`invalid storage prefix ${JSON.stringify(prefix)}`);
  }
}

export function checkKey(key: string): void {
  if (!key || key.startsWith('/') || key.endsWith('/') || key.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`invalid storage key ${JSON.stringify(key)}`);
  }
}
