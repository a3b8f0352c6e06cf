/**
 * A userspace stand-in for the blksnap kernel module, following shared/docs/blksnap.md. It
 * implements BlksnapDriver: it receives the same ioctl argument buffers the kernel would, decodes
 * them with kernel-abi.ts and answers with the module's results and errno values.
 *
 * Its state lives in a directory (state.json + copy-on-write files), guarded by a lock file, so
 * that separate processes — `bkp full`, a later `bkp incr`, and the test writing to the
 * originals meanwhile — see one module. The CLI uses it when run through test/bin/bkp.ts with BKP_BLKSNAP_FAKE=<dir>.
 *
 * Originals are block devices (loop devices) or regular files (given ids FILE_MAJOR:n). Writes
 * only count when made through `write()`: it copies the old data of every taken snapshot to the
 * COW store first (charging the snapshot's appended storage), then writes the original and marks
 * the tracker's write map. "Module reload" is `reload()`: trackers and snapshots are gone.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { mkdir, open, readFile, realpath, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockSource } from '../../../src/device/source.js';
import { NotADeviceError, fromSystemError, isSystemError } from '../../../src/errors.js';
import { native } from '../../../src/native/index.js';
import * as abi from './kernel-abi.js';
import { devKey, parseDevKey, type DevId } from './kernel-abi.js';
import { markDirty, newTracker, takeSwitch, trackWrite, type TrackerState } from '../../../src/blksnap/cbt.js';
import { decodeDev } from '../../../src/blksnap/devices.js';
import type { BlksnapDriver, PointerArg } from '../../../src/blksnap/driver.js';

export interface FakeConfig {
  /** requested_nr_sect of low-free-space events (the module's minimum portion). */
  portionSectors: number;
  /** Copy-on-write granularity in bytes: each chunk first written after take costs this much storage. */
  chunkSize: number;
  /** Jiffies per second, for WAIT_EVENT's timeout. */
  hz: number;
  /** Major number of image devices. */
  imageMajor: number;
  /** Major number given to regular-file originals. */
  fileMajor: number;
}

export const DEFAULT_FAKE_CONFIG: FakeConfig = {
  portionSectors: 2_097_152,
  chunkSize: 64 * 1024,
  hz: 250,
  imageMajor: 252,
  fileMajor: 4000,
};

export const FAKE_VERSION: abi.Version = { major: 1, minor: 0, revision: 0, build: 0 };

type StoredEvent = { code: 0; timeLabel: string; requestedSectors: number } | { code: 1; timeLabel: string; dev: string; errCode: number };

interface StoredTracker extends Omit<TrackerState, 'writeMap' | 'readMap'> {
  writeMap: string;
  readMap: string;
}

interface StoredImage {
  image: string;
  capacity: number;
  /** COW chunk indexes holding snapshot-time data. */
  cow: number[];
  corrupted: boolean;
}

interface StoredSnapshot {
  devices: string[];
  taken: boolean;
  storageBytes: number;
  usedBytes: number;
  storage: Array<{ dev: string; sector: number; count: number }>;
  events: StoredEvent[];
  images: Record<string, StoredImage>;
}

export interface FakeState {
  version: 1;
  config: FakeConfig;
  nextImageMinor: number;
  nextFileMinor: number;
  /** devKey → path of the original. */
  devices: Record<string, string>;
  trackers: Record<string, StoredTracker>;
  snapshots: Record<string, StoredSnapshot>;
}

function emptyState(config: FakeConfig): FakeState {
  return { version: 1, config, nextImageMinor: 0, nextFileMinor: 0, devices: {}, trackers: {}, snapshots: {} };
}

/** An Error shaped like the native addon's errno errors. */
export function errnoError(code: string, syscall = 'ioctl'): Error & { code: string; errno: number; syscall: string } {
  const n = (osConstants.errno as Record<string, number>)[code] ?? 0;
  return Object.assign(new Error(`${code}: blksnap fake, ${syscall}`), { code, errno: -n, syscall });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function loadTracker(t: StoredTracker): TrackerState {
  return { ...t, writeMap: new Uint8Array(Buffer.from(t.writeMap, 'base64')), readMap: new Uint8Array(Buffer.from(t.readMap, 'base64')) };
}

function storeTracker(t: TrackerState): StoredTracker {
  return { ...t, writeMap: Buffer.from(t.writeMap).toString('base64'), readMap: Buffer.from(t.readMap).toString('base64') };
}

function newUuid(): string {
  return randomBytes(16).toString('hex');
}

function pointer(pointers: readonly PointerArg[], at: number): Buffer | undefined {
  return pointers.find((p) => p.at === at)?.buffer;
}

/** Serialises this process's operations per state directory before the cross-process lock file. */
const inProcess = new Map<string, Promise<unknown>>();

export class BlksnapFake implements BlksnapDriver {
  readonly moduleName = 'fake';

  private constructor(readonly dir: string) {}

  get controlPath(): string {
    return this.dir;
  }

  /** Open (creating if needed) the fake's state in `dir`; `config` given here is stored for every later process. */
  static async open(dir: string, config: Partial<FakeConfig> = {}): Promise<BlksnapFake> {
    await mkdir(join(dir, 'cow'), { recursive: true });
    const fake = new BlksnapFake(dir);
    await fake.locked(async (s) => {
      s.config = { ...DEFAULT_FAKE_CONFIG, ...s.config, ...config };
    });
    return fake;
  }

  // --- state and locking ---

  private get statePath(): string {
    return join(this.dir, 'state.json');
  }

  private cowPath(id: string, dev: string): string {
    return join(this.dir, 'cow', `${id}_${dev.replace(':', '_')}`);
  }

  private async acquireFileLock(): Promise<void> {
    const lock = join(this.dir, 'state.lock');
    for (let i = 0; ; i++) {
      try {
        await writeFile(lock, String(process.pid), { flag: 'wx' });
        return;
      } catch (e) {
        if (!isSystemError(e, 'EEXIST')) throw e;
      }
      // A holder that died (killed bkp) leaves the file behind: take it over. Killed between
      // creating the file and writing its pid, it leaves an empty file: stale after a second.
      const text = await readFile(lock, 'utf8').catch(() => null);
      const pid = Number(text);
      if (text !== null && !(pid > 0)) {
        const age = Date.now() - ((await stat(lock).catch(() => null))?.mtimeMs ?? Date.now());
        if (age > 1000) await unlink(lock).catch(() => undefined);
      } else if (pid > 0 && pid !== process.pid) {
        try {
          process.kill(pid, 0);
        } catch (e) {
          if (isSystemError(e, 'ESRCH')) await unlink(lock).catch(() => undefined);
        }
      }
      await sleep(i < 50 ? 1 : 5);
    }
  }

  /** Run `fn` on the state under the lock; the state is saved afterwards if it changed. */
  async locked<T>(fn: (s: FakeState) => Promise<T> | T): Promise<T> {
    const prev = inProcess.get(this.dir) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    inProcess.set(this.dir, chained);
    await prev;
    try {
      await this.acquireFileLock();
      try {
        let s: FakeState;
        try {
          s = JSON.parse(await readFile(this.statePath, 'utf8')) as FakeState;
        } catch (e) {
          if (!isSystemError(e, 'ENOENT')) throw e;
          s = emptyState({ ...DEFAULT_FAKE_CONFIG });
        }
        const before = JSON.stringify(s);
        try {
          return await fn(s);
        } finally {
          // Saved even when fn threw: like the module, a failing control can have effects
          // (TAKE's EFAULT drops the snapshot).
          if (JSON.stringify(s) !== before) await this.saveState(s);
        }
      } finally {
        await unlink(join(this.dir, 'state.lock')).catch(() => undefined);
      }
    } finally {
      release();
      if (inProcess.get(this.dir) === chained) inProcess.delete(this.dir);
    }
  }

  /** Replaces the state file (a new file each time: readers notice by its inode). Under the lock. */
  private async saveState(s: FakeState): Promise<void> {
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(s));
    await rename(tmp, this.statePath);
  }

  /** A copy of the state, for assertions. */
  state(): Promise<FakeState> {
    return this.locked((s) => structuredClone(s));
  }

  /** Module reload: trackers, snapshots and their images are gone. */
  async reload(): Promise<void> {
    await this.locked(async (s) => {
      s.trackers = {};
      s.snapshots = {};
    });
    await rm(join(this.dir, 'cow'), { recursive: true, force: true });
    await mkdir(join(this.dir, 'cow'), { recursive: true });
  }

  /**
   * What the module does when tracking fails (e.g. a map allocation fails under memory pressure):
   * the tracker's map is marked corrupted, and the next TAKE resets it with a new generation.
   */
  async corruptTracker(path: string): Promise<void> {
    await this.locked(async (s) => {
      const key = devKey(await this.register(s, path));
      const stored = s.trackers[key];
      if (!stored) throw errnoError('ENODATA');
      s.trackers[key] = { ...stored, corrupted: true };
    });
  }

  async setConfig(config: Partial<FakeConfig>): Promise<void> {
    await this.locked((s) => {
      s.config = { ...s.config, ...config };
    });
  }

  // --- originals ---

  resolveDevice(path: string): Promise<DevId> {
    return this.locked((s) => this.register(s, path));
  }

  private async register(s: FakeState, path: string): Promise<DevId> {
    let st;
    try {
      st = await stat(path, { bigint: true });
    } catch (e) {
      throw fromSystemError(e, 'device', path);
    }
    if (st.isBlockDevice()) {
      const dev = decodeDev(st.rdev);
      s.devices[devKey(dev)] = path;
      return dev;
    }
    if (!st.isFile()) throw new NotADeviceError(`${path} is not a block device or an image file`);
    const real = await realpath(path);
    const known = Object.entries(s.devices).find(([, p]) => p === real);
    if (known) return parseDevKey(known[0]);
    const dev = { major: s.config.fileMajor, minor: s.nextFileMinor++ };
    s.devices[devKey(dev)] = real;
    return dev;
  }

  private async capacityOf(path: string): Promise<number> {
    const st = await stat(path);
    if (!st.isBlockDevice()) return st.size;
    const fh = await open(path, 'r');
    try {
      return native().blockDeviceSize(fh.fd);
    } finally {
      await fh.close();
    }
  }

  private static async readAt(path: string, buffer: Buffer, offset: number, length: number, position: number): Promise<void> {
    const fh = await open(path, 'r');
    try {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buffer, offset + done, length - done, position + done);
        if (bytesRead === 0) {
          buffer.fill(0, offset + done, offset + length);
          break;
        }
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }

  /**
   * Write to an original as an application would through the tracked device: copy-on-write into
   * every taken snapshot of it, write, then mark the write map.
   */
  async write(path: string, offset: number, data: Buffer): Promise<void> {
    await this.locked(async (s) => {
      const dev = await this.register(s, path);
      const key = devKey(dev);
      const orig = s.devices[key]!;
      const capacity = await this.capacityOf(orig);
      if (offset < 0 || offset + data.length > capacity) throw errnoError('ENOSPC', 'write');
      if (data.length === 0) return;
      const chunk = s.config.chunkSize;
      let copiedAny = false;
      for (const [id, snap] of Object.entries(s.snapshots)) {
        const img = snap.images[key];
        if (!snap.taken || !img || img.corrupted) continue;
        const copied = new Set(img.cow);
        for (let c = Math.floor(offset / chunk); c <= Math.floor((offset + data.length - 1) / chunk); c++) {
          if (copied.has(c) || c * chunk >= img.capacity) continue;
          if (snap.usedBytes + chunk > snap.storageBytes) {
            img.corrupted = true;
            snap.events.push({ code: 1, timeLabel: String(Date.now()), dev: key, errCode: osConstants.errno.ENOSPC });
            break;
          }
          const len = Math.min(chunk, img.capacity - c * chunk);
          const old = Buffer.alloc(len);
          await BlksnapFake.readAt(orig, old, 0, len, c * chunk);
          const fh = await open(this.cowPath(id, key), fsConstants.O_RDWR | fsConstants.O_CREAT);
          try {
            await fh.write(old, 0, len, c * chunk);
          } finally {
            await fh.close();
          }
          img.cow.push(c);
          copied.add(c);
          copiedAny = true;
          snap.usedBytes += chunk;
          this.maybeLowSpace(s, snap);
        }
      }
      // the copy-on-write records are on disk before the original changes: a reader that sees the
      // new bytes then sees a new state too (readImage)
      if (copiedAny) await this.saveState(s);
      const fh = await open(orig, 'r+');
      try {
        await fh.write(data, 0, data.length, offset);
      } finally {
        await fh.close();
      }
      const stored = s.trackers[key];
      if (stored) {
        const t = loadTracker(stored);
        trackWrite(t, offset, data.length);
        s.trackers[key] = storeTracker(t);
      }
    });
  }

  /** The module asks for more storage while less than half a portion is free (one request pending at a time). */
  private maybeLowSpace(s: FakeState, snap: StoredSnapshot): void {
    const free = snap.storageBytes - snap.usedBytes;
    if (free >= (s.config.portionSectors * abi.SECTOR_SIZE) / 2) return;
    if (snap.events.some((e) => e.code === 0)) return;
    snap.events.push({ code: 0, timeLabel: String(Date.now()), requestedSectors: s.config.portionSectors });
  }

  // --- images ---

  imagePath(image: DevId): string {
    return join(this.dir, `image-${image.minor}`);
  }

  private static findImage(s: FakeState, image: DevId): { id: string; key: string; img: StoredImage } | undefined {
    const want = devKey(image);
    for (const [id, snap] of Object.entries(s.snapshots)) {
      for (const [key, img] of Object.entries(snap.images)) if (img.image === want) return { id, key, img };
    }
    return undefined;
  }

  async openImage(image: DevId): Promise<BlockSource> {
    const size = await this.locked((s) => {
      const found = BlksnapFake.findImage(s, image);
      if (!found) throw errnoError('ENOENT', 'open');
      return found.img.capacity;
    });
    const path = this.imagePath(image);
    return {
      path,
      size,
      logicalBlockSize: abi.SECTOR_SIZE,
      read: (buffer, length, position) => this.readImage(image, buffer, length, position),
      close: async () => undefined,
    };
  }

  /**
   * Snapshot-time bytes: COW chunks where the original was overwritten, the original elsewhere.
   *
   * Reads take no lock (a backup reads a whole device through here, and the state file is parsed
   * only when it changed): they read with the state as it was, then check that the state did not
   * change meanwhile, and read again when it did. A write persists its copy-on-write record before
   * it touches the original (see write), so a read that saw new bytes in the original always sees
   * a new state afterwards.
   */
  async readImage(image: DevId, buffer: Buffer, length: number, position: number): Promise<number> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const s = await this.currentState();
      const found = s && BlksnapFake.findImage(s, image);
      if (!s || !found) throw errnoError('ENXIO', 'read');
      if (found.img.corrupted) throw errnoError('EIO', 'read');
      const end = Math.min(found.img.capacity, position + length);
      if (end <= position) return 0;
      const chunk = s.config.chunkSize;
      const copied = this.cowSet(found.img);
      const orig = s.devices[found.key]!;
      // one read per run of chunks from the same file (not one per COW chunk): benchmarks read
      // whole devices through the fake
      for (let pos = position; pos < end; ) {
        let c = Math.floor(pos / chunk);
        const cow = copied.has(c);
        while ((c + 1) * chunk < end && copied.has(c + 1) === cow) c++;
        const segEnd = Math.min(end, (c + 1) * chunk);
        const from = cow ? this.cowPath(found.id, found.key) : orig;
        await BlksnapFake.readAt(from, buffer, pos - position, segEnd - pos, pos);
        pos = segEnd;
      }
      if ((await this.currentState()) === s) return end - position;
    }
    throw errnoError('EIO', 'read'); // the state never held still: a writer that never stops
  }

  /** The state as the file holds it now, parsed again only when the file was replaced; null before any. */
  private async currentState(): Promise<FakeState | null> {
    const st = await stat(this.statePath, { bigint: true }).catch((e: unknown) => {
      if (isSystemError(e, 'ENOENT')) return null;
      throw e;
    });
    if (!st) return null;
    const c = this.stateCache;
    if (c && c.ino === st.ino && c.mtimeNs === st.mtimeNs && c.size === st.size) return c.state;
    const state = JSON.parse(await readFile(this.statePath, 'utf8')) as FakeState;
    // keyed by what was seen before reading: a file replaced in between is read again next time
    this.stateCache = { ino: st.ino, mtimeNs: st.mtimeNs, size: st.size, state };
    return state;
  }

  private cowSet(img: StoredImage): Set<number> {
    let set = this.cowSets.get(img);
    if (!set) this.cowSets.set(img, (set = new Set(img.cow)));
    return set;
  }

  private stateCache: { ino: bigint; mtimeNs: bigint; size: bigint; state: FakeState } | undefined;
  private readonly cowSets = new WeakMap<StoredImage, Set<number>>();

  // --- the controls ---

  async ioctl(request: number, arg: Buffer, pointers: readonly PointerArg[]): Promise<number> {
    const name = abi.ioctlName(request);
    // The real module dispatches on the low byte alone; the fake insists on the exact number so
    // that an encoding mistake fails the tests.
    if (!name) throw errnoError('ENOTTY');
    if (name === 'SNAPSHOT_WAIT_EVENT') return this.waitEvent(arg);
    return this.locked((s) => this.control(s, name, arg, pointers));
  }

  private async control(s: FakeState, name: abi.IoctlName, arg: Buffer, pointers: readonly PointerArg[]): Promise<number> {
    switch (name) {
      case 'VERSION':
        abi.encodeVersion(FAKE_VERSION).copy(arg);
        return 0;

      case 'TRACKER_REMOVE': {
        const key = devKey(abi.decodeTrackerRemove(arg).dev);
        if (!s.trackers[key]) throw errnoError('ENODATA');
        if (Object.values(s.snapshots).some((snap) => snap.devices.includes(key))) throw errnoError('EBUSY');
        delete s.trackers[key];
        return 0;
      }

      case 'TRACKER_COLLECT': {
        const infos = Object.entries(s.trackers).map(([key, t]) => this.cbtInfo(key, t));
        return this.collectInto(arg, pointer(pointers, abi.OFFSET.trackerCollect.cbt_info_array), infos.length, abi.SIZE.cbtInfo, (into) => abi.encodeCbtInfos(infos, into));
      }

      case 'TRACKER_READ_CBT_MAP': {
        const r = abi.decodeReadCbtBitmap(arg);
        const key = devKey(r.dev);
        const stored = s.trackers[key];
        if (!stored) throw errnoError('ENODATA');
        if (!Object.values(s.snapshots).some((snap) => snap.taken && snap.devices.includes(key))) throw errnoError('EPERM');
        const buff = pointer(pointers, abi.OFFSET.readCbtBitmap.buff);
        if (!buff || buff.length < r.length) throw errnoError('EINVAL');
        const map = Buffer.from(stored.readMap, 'base64');
        if (r.offset > map.length) throw errnoError('EINVAL');
        return map.copy(buff, 0, r.offset, Math.min(map.length, r.offset + r.length));
      }

      case 'TRACKER_MARK_DIRTY_BLOCKS': {
        const { dev, count } = abi.decodeMarkDirty(arg);
        const key = devKey(dev);
        const stored = s.trackers[key];
        if (!stored) throw errnoError('ENODATA');
        const ranges = pointer(pointers, abi.OFFSET.markDirty.dirty_blocks_array);
        if (!ranges || ranges.length < count * abi.SIZE.blockRange) throw errnoError('EINVAL');
        const t = loadTracker(stored);
        markDirty(t, abi.decodeBlockRanges(ranges, count));
        s.trackers[key] = storeTracker(t);
        return 0;
      }

      case 'SNAPSHOT_CREATE': {
        const { count } = abi.decodeSnapshotCreate(arg);
        const array = pointer(pointers, abi.OFFSET.snapshotCreate.dev_id_array);
        if (count === 0 || !array || array.length < count * abi.SIZE.devId) throw errnoError('EINVAL');
        const keys = abi.decodeDevIds(array, count).map(devKey);
        for (const key of keys) {
          if (!s.devices[key]) throw errnoError('ENODEV');
          for (const snap of Object.values(s.snapshots)) if (snap.taken && snap.devices.includes(key)) throw errnoError('EBUSY');
        }
        // The real module accepts a device of a not-yet-taken snapshot, and the older snapshot is gone.
        for (const [id, snap] of Object.entries(s.snapshots)) {
          if (!snap.taken && snap.devices.some((k) => keys.includes(k))) delete s.snapshots[id];
        }
        for (const key of keys) {
          if (!s.trackers[key]) s.trackers[key] = storeTracker(newTracker(await this.capacityOf(s.devices[key]!), newUuid()));
        }
        const id = newUuid();
        s.snapshots[id] = {
          devices: keys,
          taken: false,
          storageBytes: 0,
          usedBytes: 0,
          storage: [],
          events: [{ code: 0, timeLabel: String(Date.now()), requestedSectors: s.config.portionSectors }],
          images: {},
        };
        abi.setSnapshotCreateId(arg, id);
        return 0;
      }

      case 'SNAPSHOT_DESTROY': {
        const id = abi.decodeSnapshotId(arg);
        const snap = s.snapshots[id];
        if (!snap) throw errnoError('ENODEV');
        delete s.snapshots[id];
        for (const key of snap.devices) await rm(this.cowPath(id, key), { force: true });
        return 0;
      }

      case 'SNAPSHOT_APPEND_STORAGE': {
        const { id, dev, count } = abi.decodeAppendStorage(arg);
        const snap = s.snapshots[id];
        if (!snap) throw errnoError('ESRCH');
        const array = pointer(pointers, abi.OFFSET.appendStorage.ranges);
        if (count === 0 || !array || array.length < count * abi.SIZE.blockRange) throw errnoError('EINVAL');
        for (const r of abi.decodeBlockRanges(array, count)) {
          snap.storage.push({ dev: devKey(dev), sector: r.sector, count: r.count });
          snap.storageBytes += r.count * abi.SECTOR_SIZE;
        }
        return 0;
      }

      case 'SNAPSHOT_TAKE': {
        const id = abi.decodeSnapshotId(arg);
        const snap = s.snapshots[id];
        if (!snap) throw errnoError('ESRCH');
        if (snap.taken) throw errnoError('EALREADY');
        if (snap.storageBytes === 0) {
          delete s.snapshots[id];
          throw errnoError('EFAULT');
        }
        for (const key of snap.devices) {
          const capacity = await this.capacityOf(s.devices[key]!);
          const stored = s.trackers[key];
          const t = stored ? loadTracker(stored) : newTracker(capacity, newUuid());
          s.trackers[key] = storeTracker(takeSwitch(t, capacity, newUuid));
          snap.images[key] = { image: devKey({ major: s.config.imageMajor, minor: s.nextImageMinor++ }), capacity, cow: [], corrupted: false };
        }
        snap.taken = true;
        return 0;
      }

      case 'SNAPSHOT_COLLECT': {
        const ids = Object.keys(s.snapshots);
        return this.collectInto(arg, pointer(pointers, abi.OFFSET.snapshotCollect.ids), ids.length, abi.UUID_SIZE, (into) => abi.encodeUuids(ids, into));
      }

      case 'SNAPSHOT_COLLECT_IMAGES': {
        const { id, count } = abi.decodeCollectImages(arg);
        const snap = s.snapshots[id];
        if (!snap) throw errnoError('ESRCH');
        if (!snap.taken) throw errnoError('ENODEV');
        const infos = snap.devices.map((key) => ({ orig: parseDevKey(key), image: parseDevKey(snap.images[key]!.image) }));
        const array = pointer(pointers, abi.OFFSET.collectImages.image_info_array);
        abi.setCollectImagesCount(arg, infos.length);
        if (!array) return 0;
        if (count < infos.length) throw errnoError('ENODATA');
        if (array.length < infos.length * abi.SIZE.imageInfo) throw errnoError('EINVAL');
        abi.encodeImageInfos(infos, array);
        return 0;
      }

      case 'SNAPSHOT_WAIT_EVENT':
        throw new Error('unreachable');
    }
  }

  private cbtInfo(key: string, t: StoredTracker): abi.CbtInfo {
    return { dev: parseDevKey(key), blkSize: t.blkSize, deviceCapacity: t.capacity, blkCount: t.blkCount, generationId: t.generationId, snapNumber: t.previous };
  }

  /** The count protocol: null array → count; array too small → ENODATA with the count; else fill. */
  private collectInto(arg: Buffer, array: Buffer | undefined, n: number, itemSize: number, fill: (into: Buffer) => void): number {
    const given = abi.decodeCollectCount(arg);
    abi.setCollectCount(arg, n);
    if (!array) return 0;
    if (given < n) throw errnoError('ENODATA');
    if (array.length < n * itemSize) throw errnoError('EINVAL');
    fill(array);
    return 0;
  }

  private async waitEvent(arg: Buffer): Promise<number> {
    const { id, timeout } = abi.decodeWaitEventRequest(arg);
    const cfg = await this.locked((s) => s.config);
    const deadline = Date.now() + (timeout * 1000) / cfg.hz;
    for (;;) {
      const ev = await this.locked((s) => {
        const snap = s.snapshots[id];
        if (!snap) throw errnoError('ESRCH');
        return snap.events.shift();
      });
      if (ev) {
        const timeLabel = BigInt(ev.timeLabel);
        abi.setEventReply(
          arg,
          ev.code === 0
            ? { code: 0, kind: 'low-free-space', timeLabel, requestedSectors: ev.requestedSectors }
            : { code: 1, kind: 'corrupted', timeLabel, dev: parseDevKey(ev.dev), errCode: ev.errCode },
        );
        return 0;
      }
      if (Date.now() >= deadline) throw errnoError('ENOENT');
      await sleep(Math.min(10, Math.max(1, deadline - Date.now())));
    }
  }

  async close(): Promise<void> {}
}
