/**
 * Difference storage: preallocated files in a directory whose physical extents (FIEMAP) are
 * handed to blksnap as 512-byte sector ranges on the block device under the filesystem.
 *
 * The ranges are relative to the device st_dev names — the partition when the filesystem is on a
 * partition — and appended with that device's id; the module writes through that device, so no
 * partition offset is added (BlockDeviceInfo.partitionStart has it if a whole-disk form is needed).
 */
import { open, readFile, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NoSpaceError, fromSystemError, isSystemError } from '../errors.js';
import { FiemapFlag, native, type FiemapExtent } from '../native/index.js';
import { SECTOR_SIZE, devKey, sameDev, type DevId, type SectorRange } from './abi.js';
import { blockDeviceInfo, blockDeviceOfFile, type BlockDeviceInfo } from './devices.js';
import { DiffStorageUnsupportedError } from './errors.js';

/** statfs f_type values of filesystems whose FIEMAP offsets are not sectors of one device. */
const UNSUPPORTED_FS: Record<number, string> = {
  0x9123683e: 'btrfs',
  0x2fc12fc1: 'zfs',
  0x01021994: 'tmpfs',
  0x794c7630: 'overlayfs',
  0x65735546: 'fuse',
  0x6969: 'nfs',
  0xff534d42: 'cifs',
};

/** Flags that mean the extent's bytes are not stored verbatim at `physical`. */
const BAD_EXTENT_FLAGS =
  FiemapFlag.UNKNOWN | FiemapFlag.DELALLOC | FiemapFlag.ENCODED | FiemapFlag.DATA_ENCRYPTED | FiemapFlag.NOT_ALIGNED | FiemapFlag.DATA_INLINE | FiemapFlag.DATA_TAIL | FiemapFlag.SHARED;

export const DIFF_FILE_PREFIX = 'bkp-diff-';
/**
 * `bkp-pending-<pid>`: written before CREATE, removed once the snapshot's files (named after its
 * id) exist. A bkp killed in between leaves a snapshot no file names; the marker of a dead pid
 * tells `bkp snapshot cleanup` that such a snapshot is bkp's.
 */
export const PENDING_PREFIX = 'bkp-pending-';
/** Files are allocated in multiples of this. */
const ALLOCATION_UNIT = 1024 * 1024;

/**
 * Extents → sector ranges, refusing anything that is not plain preallocated space covering
 * [0, size) without holes. Pure.
 */
export function extentsToRanges(extents: readonly FiemapExtent[], size: number, what: string): SectorRange[] {
  const ranges: SectorRange[] = [];
  let covered = 0;
  for (const e of extents) {
    if (e.flags & BAD_EXTENT_FLAGS) {
      throw new DiffStorageUnsupportedError(`${what}: extent at ${e.logical} has FIEMAP flags 0x${e.flags.toString(16)} (encoded, inline, shared, delayed or unaligned): this filesystem cannot hold blksnap difference storage`);
    }
    if (e.logical !== covered) throw new DiffStorageUnsupportedError(`${what}: hole at byte ${covered} (the file is sparse); difference storage must be fully allocated`);
    if (e.physical % SECTOR_SIZE !== 0 || e.length % SECTOR_SIZE !== 0) {
      throw new DiffStorageUnsupportedError(`${what}: extent at ${e.logical} is not sector-aligned`);
    }
    const len = Math.min(e.length, size - covered);
    if (len <= 0) break;
    covered += len;
    const sector = e.physical / SECTOR_SIZE;
    const count = Math.ceil(len / SECTOR_SIZE);
    const last = ranges[ranges.length - 1];
    if (last && last.sector + last.count === sector) last.count += count;
    else ranges.push({ sector, count });
  }
  if (covered < size) throw new DiffStorageUnsupportedError(`${what}: only ${covered} of ${size} bytes are allocated (the file is sparse)`);
  return ranges;
}

export interface DiffStorageOptions {
  dir: string;
  /** Upper bound of all files together, in bytes. */
  limit: number;
  /** Devices being backed up: storage on one of them gets a warning. */
  backedUp?: readonly DevId[];
  /** Names files `bkp-diff-<tag>-<n>`; the snapshot id is a good tag (cleanup finds them). */
  tag?: string;
}

export interface Allocation {
  path: string;
  bytes: number;
  ranges: SectorRange[];
}

export class DiffStorage {
  private readonly files: Allocation[] = [];
  private removed = false;

  private constructor(
    readonly dir: string,
    readonly limit: number,
    /** The block device under the directory's filesystem: ranges are appended for this id. */
    readonly device: BlockDeviceInfo,
    readonly warnings: readonly string[],
    private tag: string,
  ) {}

  /** Check that `dir` can hold difference storage; nothing is allocated yet. */
  static async open(opts: DiffStorageOptions): Promise<DiffStorage> {
    const { dir } = opts;
    let fsType: number;
    try {
      fsType = Number((await statfs(dir)).type);
    } catch (e) {
      throw fromSystemError(e, 'difference storage directory', dir);
    }
    const fsName = UNSUPPORTED_FS[fsType];
    if (fsName) {
      throw new DiffStorageUnsupportedError(`difference storage directory ${dir} is on ${fsName}, whose file extents are not sectors of one block device; use a directory on ext4 or xfs`);
    }
    const where = await blockDeviceOfFile(dir);
    if (where.fsDevUnnamed) {
      throw new DiffStorageUnsupportedError(`difference storage directory ${dir} is on a filesystem without a block device (device ${devKey(where.dev)}); use a directory on ext4 or xfs on a disk or partition`);
    }
    if (where.isDm) {
      throw new DiffStorageUnsupportedError(`difference storage directory ${dir} is on device-mapper device ${where.path} (LVM, dm-crypt, …); use a filesystem on a plain disk or partition`);
    }
    const warnings: string[] = [];
    const backedUp = opts.backedUp ?? [];
    const disks = await Promise.all(backedUp.map(async (d) => (await blockDeviceInfo(d))?.disk));
    const hit = backedUp.find((d, i) => sameDev(d, where.dev) || (where.disk && (sameDev(d, where.disk) || (disks[i] && sameDev(disks[i]!, where.disk)))));
    if (hit) {
      warnings.push(`difference storage directory ${dir} is on ${where.path}, which shares a disk with a device being backed up (${devKey(hit)}): its writes are tracked and will show up as changed blocks in the next incremental backup`);
    }
    const { fsDevUnnamed: _unused, ...device } = where;
    void _unused;
    return new DiffStorage(dir, opts.limit, device, warnings, opts.tag ?? String(process.pid));
  }

  /** Name files after this tag from now on (e.g. once the snapshot id is known). */
  setTag(tag: string): void {
    this.tag = tag;
  }

  get allocated(): number {
    return this.files.reduce((n, f) => n + f.bytes, 0);
  }

  get remaining(): number {
    return Math.max(0, this.limit - this.allocated);
  }

  get allocations(): readonly Allocation[] {
    return this.files;
  }

  /**
   * Allocate one more file of `bytes` (rounded up to 1 MiB, clipped to the limit). Resolves null
   * when the limit is reached. The file is fallocated (never sparse) and its extents checked.
   */
  async allocate(bytes: number): Promise<Allocation | null> {
    if (this.removed) throw new Error('difference storage already removed');
    const size = Math.min(Math.ceil(bytes / ALLOCATION_UNIT) * ALLOCATION_UNIT, Math.floor(this.remaining / ALLOCATION_UNIT) * ALLOCATION_UNIT);
    if (size <= 0) return null;
    const path = join(this.dir, `${DIFF_FILE_PREFIX}${this.tag}-${this.files.length}`);
    const fh = await open(path, 'wx', 0o600).catch((e: unknown) => {
      throw fromSystemError(e, 'difference storage file', path);
    });
    const allocation: Allocation = { path, bytes: size, ranges: [] };
    this.files.push(allocation);
    try {
      try {
        await native().fallocate(fh.fd, 0, 0, size);
      } catch (e) {
        if (isSystemError(e, 'ENOSPC')) throw new NoSpaceError(`no space for ${size} bytes of difference storage in ${this.dir}`, { cause: e });
        if (isSystemError(e, 'EOPNOTSUPP')) throw new DiffStorageUnsupportedError(`the filesystem of ${this.dir} cannot preallocate files (fallocate); use ext4 or xfs`, { cause: e });
        throw e;
      }
      await fh.sync();
      allocation.ranges = extentsToRanges(await native().fiemap(fh.fd), size, path);
    } finally {
      await fh.close();
    }
    return allocation;
  }

  private get pendingPath(): string {
    return join(this.dir, `${PENDING_PREFIX}${process.pid}`);
  }

  /** Say, before CREATE, that a snapshot of ours may exist that no file names yet. */
  async markPending(): Promise<void> {
    try {
      await writeFile(this.pendingPath, `${process.pid}\n`, { mode: 0o600 });
    } catch (e) {
      throw fromSystemError(e, 'difference storage directory', this.dir);
    }
  }

  /** The snapshot's files exist (they name it): the marker is no longer needed. */
  async clearPending(): Promise<void> {
    await rm(this.pendingPath, { force: true });
  }

  /** Delete every file. Idempotent. */
  async remove(): Promise<void> {
    this.removed = true;
    await Promise.all([...this.files.map((f) => rm(f.path, { force: true })), this.clearPending()]);
  }
}

export interface PendingMarker {
  path: string;
  pid: number;
  /** The process that wrote it still runs (it may be creating a snapshot right now). */
  alive: boolean;
}

/** The pending markers in `dir` (see PENDING_PREFIX). */
export async function pendingMarkers(dir: string): Promise<PendingMarker[]> {
  const out: PendingMarker[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(PENDING_PREFIX)) continue;
    const path = join(dir, name);
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim() || name.slice(PENDING_PREFIX.length));
    out.push({ path, pid, alive: Number.isSafeInteger(pid) && pid > 0 && processAlive(pid) });
  }
  return out;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return isSystemError(e, 'EPERM');
  }
}

/** Delete difference files left in `dir` by snapshots that no longer exist (after a crash). */
export async function removeStaleDiffFiles(dir: string, liveTags: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(DIFF_FILE_PREFIX)) continue;
    const tag = name.slice(DIFF_FILE_PREFIX.length).replace(/-\d+$/, '');
    if (liveTags.includes(tag)) continue;
    await rm(join(dir, name), { force: true });
    removed.push(join(dir, name));
  }
  return removed;
}
