/**
 * A restore must never write over the repository it reads from, even with --force: not a file in
 * it (its config, a pack), not the block device whose filesystem holds it (nor that device's whole
 * disk, nor a device-mapper or md device's members), not the image file behind a loop device that
 * holds it. What holds the repository is found from its directory's st_dev, /proc/self/mountinfo
 * (the source device of the mount, for filesystems such as btrfs whose st_dev is not a device's)
 * and /sys/dev/block (partition → disk, slaves, loop backing_file), followed transitively.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { devNumOf } from '../device/mounts.js';
import { TargetInUseError } from '../errors.js';

/** Where a local repository lives: its real directory, and the devices and image files under it. */
export interface RepositoryPlace {
  dir: string;
  /** "major:minor" of every block device the repository's filesystem depends on. */
  devices: Map<string, string>;
  /** "dev:inode" of every image file behind a loop device the repository depends on, with its path. */
  files: Map<string, string>;
}

/** A restore target as it is now: its real path, and what it is when it exists. */
export interface TargetIdentity {
  path: string;
  /** "major:minor" of a block device. */
  device?: string;
  /** "dev:inode" of an existing file. */
  file?: string;
}

/** Why writing the target would destroy the repository, or null. Pure. */
export function repositoryHit(place: RepositoryPlace, target: TargetIdentity): string | null {
  if (target.path === place.dir || target.path.startsWith(place.dir.endsWith('/') ? place.dir : `${place.dir}/`)) {
    return `it is inside the repository ${place.dir}`;
  }
  if (target.device && place.devices.has(target.device)) return `it holds the filesystem of the repository ${place.dir} (${place.devices.get(target.device)})`;
  if (target.file && place.files.has(target.file)) return `it is the image file behind ${place.files.get(target.file)}, which holds the repository ${place.dir}`;
  return null;
}

/** Refuses (exit 17, whatever --force says) a target that is or holds the local repository at `repoDir`. */
export async function refuseRepositoryTarget(repoDir: string, to: string, realTo: string): Promise<void> {
  const place = await repositoryPlace(repoDir);
  if (!place) return;
  const why = repositoryHit(place, await targetIdentity(realTo));
  if (why) throw new TargetInUseError(`restore target ${to} is refused even with --force: ${why}`);
}

async function targetIdentity(realPath: string): Promise<TargetIdentity> {
  const st = await fs.stat(realPath, { bigint: true }).catch(() => null);
  if (st?.isBlockDevice()) return { path: realPath, device: numText(st.rdev) };
  if (st?.isFile()) return { path: realPath, file: `${st.dev}:${st.ino}` };
  return { path: realPath };
}

const numText = (d: bigint | number) => {
  const { major, minor } = devNumOf(d);
  return `${major}:${minor}`;
};

export async function repositoryPlace(repoDir: string): Promise<RepositoryPlace | null> {
  const dir = await fs.realpath(repoDir).catch(() => null);
  const st = dir ? await fs.stat(dir, { bigint: true }).catch(() => null) : null;
  if (!dir || !st) return null;
  const place: RepositoryPlace = { dir, devices: new Map(), files: new Map() };
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  await follow(numText(st.dev), place, mountinfo, 0);
  return place;
}

async function follow(num: string, place: RepositoryPlace, mountinfo: string, depth: number): Promise<void> {
  if (place.devices.has(num) || depth > 16) return;
  const sys = `/sys/dev/block/${num}`;
  const name = path.basename((await fs.realpath(sys).catch(() => '')) || num);
  place.devices.set(num, name === num ? `device ${num}` : `/dev/${name}`);
  // the mount's source: the device behind a filesystem whose st_dev is an anonymous one (btrfs)
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[2] !== num) continue;
    const source = f[f.indexOf('-') + 2];
    const s = source?.startsWith('/') ? await fs.stat(source.replace(/\\040/g, ' '), { bigint: true }).catch(() => null) : null;
    if (s?.isBlockDevice()) await follow(numText(s.rdev), place, mountinfo, depth + 1);
  }
  // a partition's whole disk
  if (await fs.stat(`${sys}/partition`).catch(() => null)) {
    const disk = await fs.readFile(`${sys}/../dev`, 'utf8').catch(() => null);
    if (disk) await follow(disk.trim(), place, mountinfo, depth + 1);
  }
  // device-mapper and md members
  for (const slave of await fs.readdir(`${sys}/slaves`).catch(() => [] as string[])) {
    const dev = await fs.readFile(`${sys}/slaves/${slave}/dev`, 'utf8').catch(() => null);
    if (dev) await follow(dev.trim(), place, mountinfo, depth + 1);
  }
  // a loop device's image file, and what holds that file in turn
  const backing = (await fs.readFile(`${sys}/loop/backing_file`, 'utf8').catch(() => '')).trim();
  if (backing) {
    const b = await fs.stat(backing, { bigint: true }).catch(() => null);
    if (b?.isFile()) {
      place.files.set(`${b.dev}:${b.ino}`, place.devices.get(num)!);
      await follow(numText(b.dev), place, mountinfo, depth + 1);
    }
  }
}
