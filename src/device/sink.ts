/**
 * Where a restore writes: a block device or an image file, opened only after the checks that
 * keep a user from overwriting the wrong thing (size, in use, existing data without --force).
 */
import { promises as fs, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { deviceFacts } from './facts.js';
import { deviceInUse } from './mounts.js';
import { probeSignature, PROBE_BYTES } from './probe.js';
import { fromSystemError, isSystemError, TargetHasDataError, TargetInUseError, TargetTooSmallError, DeviceMissingError } from '../errors.js';
import { native } from '../native/index.js';
import { isAligned, openDirect } from './direct-io.js';

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
  close(): Promise<void>;
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
    return openFile(target, size);
  }
  const facts = await deviceFacts(target, 'restore target');
  if (facts.kind === 'file') {
    if (facts.size > 0 && !force) {
      throw new TargetHasDataError(`restore target ${target} is an existing file of ${facts.size} bytes; pass --force to overwrite it`);
    }
    return openFile(target, size);
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
    async close() {
      await direct?.close();
      await fh.close();
    },
  };
}

async function openFile(target: string, size: number): Promise<RestoreSink> {
  let fh: fs.FileHandle;
  try {
    // truncating makes the whole file a hole: zero chunks then cost nothing
    fh = await fs.open(target, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    await fh.truncate(size);
  } catch (e) {
    throw fromSystemError(e, 'restore target', target);
  }
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
    close: () => fh.close(),
  };
}
