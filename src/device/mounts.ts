/**
 * Is a block device in use by the system: mounted (itself or a partition), active swap, or held
 * by device-mapper/md? Read from /proc and /sys; the exclusive open in writer.ts is the final word.
 */
import { promises as fs } from 'node:fs';

export interface DevNum {
  major: number;
  minor: number;
}

export function devNumOf(rdev: number | bigint): DevNum {
  const d = BigInt(rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

/** The device and all of its partitions, as "major:minor" strings. */
async function selfAndPartitions(dev: DevNum): Promise<{ nums: Set<string>; holders: string[] }> {
  const self = `${dev.major}:${dev.minor}`;
  const nums = new Set([self]);
  const holders: string[] = [];
  const sys = `/sys/dev/block/${self}`;
  const dirs = [sys];
  for (const name of await fs.readdir(sys).catch(() => [] as string[])) {
    const devFile = await fs.readFile(`${sys}/${name}/dev`, 'utf8').catch(() => null);
    if (devFile && (await fs.stat(`${sys}/${name}/partition`).catch(() => null))) {
      nums.add(devFile.trim());
      dirs.push(`${sys}/${name}`);
    }
  }
  for (const d of dirs) holders.push(...(await fs.readdir(`${d}/holders`).catch(() => [] as string[])));
  return { nums, holders };
}

/** Why the device cannot be written to now, or null when nothing on the system uses it. */
export async function deviceInUse(dev: DevNum): Promise<string | null> {
  const { nums, holders } = await selfAndPartitions(dev);
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && nums.has(f[2]!)) return `it is mounted on ${f[4]!.replace(/\\040/g, ' ')}`;
  }
  const swaps = await fs.readFile('/proc/swaps', 'utf8').catch(() => '');
  for (const line of swaps.split('\n').slice(1)) {
    const name = line.split(/\s+/)[0];
    if (!name) continue;
    const st = await fs.stat(name).catch(() => null);
    if (st?.isBlockDevice() && nums.has(`${devNumOf(st.rdev).major}:${devNumOf(st.rdev).minor}`)) return `it is in use as swap`;
  }
  if (holders.length) return `it is held by ${holders.join(', ')} (device-mapper, md or LVM)`;
  return null;
}

/**
 * Pure: the mount points in a /proc/self/mountinfo text of the devices `nums` ("major:minor")
 * that are mounted read-write (per-mount option `rw`).
 */
export function readWriteMountPoints(mountinfo: string, nums: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length > 5 && nums.has(f[2]!) && f[5]!.split(',').includes('rw')) out.push(f[4]!.replace(/\\040/g, ' '));
  }
  return out;
}

/** Loop devices ("major:minor") whose backing file is `file` (an image attached with losetup). */
async function loopDevicesOf(file: string): Promise<DevNum[]> {
  const out: DevNum[] = [];
  for (const name of await fs.readdir('/sys/block').catch(() => [] as string[])) {
    if (!name.startsWith('loop')) continue;
    const backing = await fs.readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => null);
    if (backing?.trim() !== file) continue;
    const [major, minor] = (await fs.readFile(`/sys/block/${name}/dev`, 'utf8')).trim().split(':').map(Number);
    out.push({ major: major!, minor: minor! });
  }
  return out;
}

/**
 * Where a device to be read without a snapshot is mounted read-write (itself or a partition; for
 * an image file, through a loop device): a filesystem that may change while bkp reads it.
 */
export async function mountedReadWrite(device: string): Promise<string[]> {
  const st = await fs.stat(device).catch(() => null);
  if (!st) return [];
  const devs = st.isBlockDevice() ? [devNumOf(st.rdev)] : st.isFile() ? await loopDevicesOf(await fs.realpath(device)) : [];
  const nums = new Set<string>();
  for (const d of devs) for (const n of (await selfAndPartitions(d)).nums) nums.add(n);
  if (nums.size === 0) return [];
  return readWriteMountPoints(await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => ''), nums);
}
