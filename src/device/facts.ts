/**
 * Facts about a path the user named as a device: what it is, its size and sector sizes.
 * Block devices are measured with the native BLKGETSIZE64/BLKSSZGET/BLKPBSZGET ioctls.
 */
import { promises as fs, type Stats } from 'node:fs';
import { devNumOf, type DevNum } from './mounts.js';
import { fromSystemError, NotADeviceError } from '../errors.js';
import { native } from '../native/index.js';

export interface DeviceFacts {
  path: string;
  kind: 'block' | 'file';
  size: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  /** major:minor of a block device. */
  dev: DevNum | null;
}

export async function statDevice(path: string, what = 'device'): Promise<Stats> {
  try {
    return await fs.stat(path);
  } catch (e) {
    throw fromSystemError(e, what, path);
  }
}

export async function deviceFacts(path: string, what = 'device'): Promise<DeviceFacts> {
  const st = await statDevice(path, what);
  if (st.isDirectory()) throw new NotADeviceError(`${what} ${path} is a directory, not a block device or image file`);
  if (st.isFile()) return { path, kind: 'file', size: st.size, logicalBlockSize: 512, physicalBlockSize: 4096, dev: null };
  if (!st.isBlockDevice()) throw new NotADeviceError(`${what} ${path} is neither a block device nor a regular file`);
  const dev = devNumOf(st.rdev);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    throw fromSystemError(e, what, path);
  }
  try {
    const size = native().blockDeviceSize(fh.fd);
    const { logical, physical } = native().sectorSizes(fh.fd);
    return { path, kind: 'block', size, logicalBlockSize: logical, physicalBlockSize: physical, dev };
  } finally {
    await fh.close();
  }
}
