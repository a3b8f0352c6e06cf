/**
 * The native addon (native/, built by `npm ci` through node-gyp) and its hand-written type.
 * Every function is a mechanical syscall wrapper; failures are Errors shaped like Node's fs
 * errors: `code` (errno name, e.g. 'ENOTTY'), `errno` (negative), `syscall`.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BkpError, ExitCode } from '../errors.js';

export interface FiemapExtent {
  /** Byte offset in the file. */
  logical: number;
  /** Byte offset on the block device holding the filesystem. */
  physical: number;
  length: number;
  /** FIEMAP_EXTENT_* bits. */
  flags: number;
}

/** A pointer field of an ioctl argument struct: the address of `buffer`'s data goes at byte `at`. */
export interface PointerArg {
  at: number;
  buffer: Buffer;
}

export interface NativeBinding {
  /** The first offset in `buffer` whose memory address is a multiple of `alignment` (for O_DIRECT). */
  alignedOffset(buffer: ArrayBuffer, alignment: number): number;
  /** BLKGETSIZE64. */
  blockDeviceSize(fd: number): number;
  /** BLKSSZGET, BLKPBSZGET. */
  sectorSizes(fd: number): { logical: number; physical: number };
  /** BLKZEROOUT. */
  zeroOut(fd: number, offset: number, length: number): Promise<void>;
  /** BLKDISCARD. */
  discard(fd: number, offset: number, length: number): Promise<void>;
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  /** All extents of the file (FS_IOC_FIEMAP with FIEMAP_FLAG_SYNC, looped to FIEMAP_EXTENT_LAST). */
  fiemap(fd: number): Promise<FiemapExtent[]>;
  /**
   * ioctl(fd, request, arg) off the main thread, after writing the address of each pointer
   * buffer into `arg`. Resolves with the return value (>= 0). The kernel may update `arg` (and
   * the pointed-to buffers) even when the call fails, e.g. a count with ENODATA.
   */
  ioctl(fd: number, request: number, arg: Buffer, pointers: readonly PointerArg[]): Promise<number>;
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;
}

/** FIEMAP_EXTENT_* from <linux/fiemap.h>. */
export const FiemapFlag = {
  LAST: 0x1,
  UNKNOWN: 0x2,
  DELALLOC: 0x4,
  ENCODED: 0x8,
  DATA_ENCRYPTED: 0x80,
  NOT_ALIGNED: 0x100,
  DATA_INLINE: 0x200,
  DATA_TAIL: 0x400,
  UNWRITTEN: 0x800,
  MERGED: 0x1000,
  SHARED: 0x2000,
} as const;

/** The directory holding package.json: works from src/ (ts) and dist/src/ (compiled). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'bkp') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('bkp package root not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function addonPath(): string {
  return join(packageRoot(), 'native', 'build', 'Release', 'bkp_native.node');
}

let cached: NativeBinding | undefined;

/** The addon, loaded on first use; a BkpError when it was not built. */
export function native(): NativeBinding {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new BkpError(`native addon not built: run npm ci (missing ${path})`, ExitCode.FAILURE);
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeBinding;
  return cached;
}
