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

/**
 * Filesystems whose files are the kernel's views of itself (sizes 0 or made up; /proc/self/mem
 * is a process's memory), never disk images: statfs f_type → name.
 */
const KERNEL_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0xcafe4a11, 'bpf'],
  [0x6e736673, 'nsfs'],
  [0x62656570, 'configfs'],
  [0xf97cff8c, 'selinuxfs'],
  [0x42494e4d, 'binfmt_misc'],
  [0xde5e81e4, 'efivarfs'],
  [0x6165676c, 'pstore'],
]);

export async function deviceFacts(path: string, what = 'device'): Promise<DeviceFacts> {
  const st = await statDevice(path, what);
  if (st.isDirectory()) throw new NotADeviceError(`${what} ${path} is a directory, not a block device or image file`);
  if (st.isFile()) {
    const fsType = KERNEL_FILESYSTEMS.get(Number((await fs.statfs(path).catch(() => null))?.type ?? 0));
    if (fsType) throw new NotADeviceError(`${what} ${path} is a file of the kernel's ${fsType} filesystem, not a block device or image file`);
    return { path, kind: 'file', size: st.size, logicalBlockSize: 512, physicalBlockSize: 4096, dev: null };
  }
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

/** Facts about a device to back up: as deviceFacts, and it must hold at least one byte. */
export async function sourceFacts(path: string): Promise<DeviceFacts> {
  const facts = await deviceFacts(path, 'device');
  if (facts.size === 0) throw new NotADeviceError(`device ${path} is empty (0 bytes): there is nothing to back up`);
  return facts;
}
