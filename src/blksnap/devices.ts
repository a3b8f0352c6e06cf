/**
 * Device ids for blksnap: major:minor of block devices, and which block device holds a file's
 * filesystem (for difference storage).
 */
import { readFile, readlink, stat, access } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { DeviceMissingError, NotADeviceError, fromSystemError } from '../errors.js';
import { devKey, type DevId } from './abi.js';

/** glibc's gnu_dev_major/gnu_dev_minor on a 64-bit dev_t. */
export function decodeDev(dev: bigint): DevId {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
  return { major, minor };
}

/** The major:minor of a block device node. */
export async function devIdOf(path: string): Promise<DevId> {
  let st;
  try {
    st = await stat(path, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, 'device', path);
  }
  if (!st.isBlockDevice()) throw new NotADeviceError(`${path} is not a block device`);
  return decodeDev(st.rdev);
}

const SYS_DEV_BLOCK = '/sys/dev/block';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function readTrim(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

export interface BlockDeviceInfo {
  dev: DevId;
  /** /dev/NAME from sysfs (DEVNAME). */
  path: string;
  /** Kernel name (sda1, loop0, dm-0). */
  name: string;
  /** Start of the partition on its disk in 512-byte sectors; 0 for a whole disk. */
  partitionStart: number;
  /** The whole disk when `dev` is a partition. */
  disk: DevId | undefined;
  /** Device-mapper device (LVM, crypt, …). */
  isDm: boolean;
  /** MD RAID device. */
  isMd: boolean;
}

/** What sysfs says about a block device, or undefined when major:minor is not a block device. */
export async function blockDeviceInfo(dev: DevId): Promise<BlockDeviceInfo | undefined> {
  const sys = join(SYS_DEV_BLOCK, devKey(dev));
  if (!(await exists(sys))) return undefined;
  const uevent = (await readTrim(join(sys, 'uevent'))) ?? '';
  const name = /^DEVNAME=(.*)$/m.exec(uevent)?.[1] ?? basename(await readlink(sys));
  const partition = await readTrim(join(sys, 'partition'));
  let disk: DevId | undefined;
  if (partition !== undefined) {
    const parentDev = await readTrim(join(sys, '..', 'dev'));
    const m = parentDev && /^(\d+):(\d+)$/.exec(parentDev);
    if (m) disk = { major: Number(m[1]), minor: Number(m[2]) };
  }
  return {
    dev,
    path: `/dev/${name}`,
    name,
    partitionStart: partition !== undefined ? Number((await readTrim(join(sys, 'start'))) ?? 0) : 0,
    disk,
    isDm: await exists(join(sys, 'dm')),
    isMd: await exists(join(sys, 'md')),
  };
}

/**
 * The block device holding the filesystem `path` is on (its st_dev). Extents FIEMAP reports are
 * byte offsets on *this* device — the partition when the filesystem is on one — so difference
 * storage is appended with this device's id and partition-relative sectors; `partitionStart`
 * converts to whole-disk sectors if ever needed.
 */
export async function blockDeviceOfFile(path: string): Promise<BlockDeviceInfo & { fsDevUnnamed: false } | { fsDevUnnamed: true; dev: DevId }> {
  let st;
  try {
    st = await stat(path, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, 'difference storage path', path);
  }
  const dev = decodeDev(st.dev);
  const info = await blockDeviceInfo(dev);
  if (!info) return { fsDevUnnamed: true, dev };
  return { ...info, fsDevUnnamed: false };
}

/** /dev path of a block device by id (sysfs DEVNAME), verified by stat. */
export async function devicePathOf(dev: DevId): Promise<string> {
  const info = await blockDeviceInfo(dev);
  if (!info) throw new DeviceMissingError(`no block device ${devKey(dev)}`);
  return info.path;
}
