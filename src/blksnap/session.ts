/**
 * One consistent snapshot across the devices of a backup: CREATE → first storage portion → TAKE →
 * images, with a background loop answering the module's events, and a close() that always
 * destroys the snapshot and removes the difference files.
 */
import type { BlockSource } from '../device/source.js';
import { SnapshotFailedError, UsageError, isSystemError } from '../errors.js';
import { SECTOR_SIZE, devKey, formatUuid, sameDev, type CbtInfo, type DevId, type SnapshotEvent } from './abi.js';
import type { Blksnap, Snapshot } from './blksnap.js';
import { DiffStorage } from './diff-storage.js';
import { DeviceInSnapshotError, SnapshotOverflowError } from './errors.js';
import { crashPoint } from '../faults.js';

export interface SnapshotSessionOptions {
  blksnap: Blksnap;
  /** Device paths as the user named them; one snapshot covers them all. */
  devices: readonly string[];
  diffStorageDir: string;
  /** Bytes of difference storage allowed in total. */
  diffStorageLimit: number;
  /** First portion when the module does not ask right after CREATE (default 1 GiB). */
  initialStorage?: number;
  /** WAIT_EVENT timeout in jiffies (an upper bound; 250 = 1 s at HZ 250). Bounds how long a closed session's last wait lingers. */
  eventTimeout?: number;
  /** How long to wait for image device nodes (udev). */
  imageTimeoutMs?: number;
  /** Called with each warning as it happens (also kept in `warnings`). */
  onWarning?: (message: string) => void;
}

export interface SessionDevice {
  path: string;
  dev: DevId;
  image: DevId;
  imagePath: string;
  /** CBT state right after TAKE: what the backup's index records. */
  cbt: CbtInfo;
}

const DEFAULT_INITIAL_STORAGE = 1024 * 1024 * 1024;
const DEFAULT_EVENT_TIMEOUT = 250;

export class SnapshotSession {
  readonly warnings: string[] = [];
  private devs: SessionDevice[] = [];
  private readonly sources = new Map<string, BlockSource>();
  private readonly corruptions = new Map<string, number>();
  private exhausted = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private handling: Promise<void> = Promise.resolve();
  private loop: Promise<void> = Promise.resolve();
  private loopError: unknown;

  private constructor(
    readonly blksnap: Blksnap,
    readonly snapshot: Snapshot,
    readonly storage: DiffStorage,
    private readonly opts: SnapshotSessionOptions,
  ) {}

  /**
   * Refuse devices already in a snapshot, CREATE, append the first portion, TAKE, find and open
   * the images, start answering events. On any failure the snapshot is destroyed and the files
   * removed before the error is thrown.
   */
  static async start(opts: SnapshotSessionOptions): Promise<SnapshotSession> {
    const { blksnap } = opts;
    if (opts.devices.length === 0) throw new UsageError('no device to snapshot');
    const ids: DevId[] = [];
    for (const path of opts.devices) {
      const dev = await blksnap.devIdOf(path);
      const dup = ids.findIndex((d) => sameDev(d, dev));
      if (dup >= 0) throw new UsageError(`${path} and ${opts.devices[dup]} are the same device (${devKey(dev)})`);
      ids.push(dev);
    }
    await SnapshotSession.refuseBusy(blksnap, opts.devices, ids);
    const storage = await DiffStorage.open({ dir: opts.diffStorageDir, limit: opts.diffStorageLimit, backedUp: ids });
    // until a file named after the snapshot exists, only this marker says the snapshot is ours
    await storage.markPending();
    let snapshot: Snapshot;
    try {
      snapshot = await blksnap.createSnapshot(ids);
    } catch (e) {
      await storage.remove().catch(() => undefined);
      throw e;
    }
    crashPoint('snapshot-created');
    storage.setTag(snapshot.id);
    const session = new SnapshotSession(blksnap, snapshot, storage, opts);
    for (const w of storage.warnings) session.warn(w);
    try {
      await session.setUp(ids);
      await storage.clearPending(); // set up: its difference storage files carry its id
    } catch (e) {
      await session.close().catch(() => undefined);
      throw e;
    }
    return session;
  }

  /**
   * The module silently replaces a not-yet-taken snapshot holding one of the devices, and cannot
   * list the devices of one: so any snapshot we cannot prove disjoint is a refusal.
   */
  private static async refuseBusy(blksnap: Blksnap, paths: readonly string[], ids: readonly DevId[]): Promise<void> {
    for (const id of await blksnap.snapshots()) {
      const snap = blksnap.snapshot(id);
      let images;
      try {
        images = await snap.images();
      } catch (e) {
        if (e instanceof SnapshotFailedError && isSystemError(e.cause, 'ENODEV')) {
          throw new DeviceInSnapshotError(`blksnap snapshot ${formatUuid(id)} is being set up by another program and its devices cannot be listed; creating ours could replace it. Retry later, or remove a leftover with: bkp snapshot cleanup`);
        }
        if (e instanceof SnapshotFailedError && isSystemError(e.cause, 'ESRCH')) continue; // gone meanwhile
        throw e;
      }
      for (const img of images) {
        const i = ids.findIndex((d) => sameDev(d, img.orig));
        if (i >= 0) {
          throw new DeviceInSnapshotError(`${paths[i]} is already in blksnap snapshot ${formatUuid(id)} (see bkp status; remove a leftover with: bkp snapshot cleanup)`);
        }
      }
    }
  }

  private async setUp(ids: readonly DevId[]): Promise<void> {
    const first = await this.snapshot.waitEvent(this.eventTimeout);
    let portion = this.opts.initialStorage ?? DEFAULT_INITIAL_STORAGE;
    if (first?.kind === 'low-free-space') portion = first.requestedSectors * SECTOR_SIZE;
    else if (first) await this.handle(first);
    if (!(await this.grow(portion))) {
      throw new SnapshotFailedError(`difference storage limit (${this.opts.diffStorageLimit} bytes) leaves no room for the first portion`);
    }
    await this.snapshot.take();
    const images = await this.snapshot.images();
    const trackers = await this.blksnap.trackers();
    this.devs = ids.map((dev, i) => {
      const path = this.opts.devices[i]!;
      const image = images.find((im) => sameDev(im.orig, dev));
      const cbt = trackers.find((t) => sameDev(t.dev, dev));
      if (!image) throw new SnapshotFailedError(`snapshot ${this.snapshot.label} has no image for ${path}`);
      if (!cbt) throw new SnapshotFailedError(`${path} has no blksnap tracker after take`);
      return { path, dev, image: image.image, imagePath: this.blksnap.driver.imagePath(image.image), cbt };
    });
    this.loop = this.eventLoop();
    for (const d of this.devs) this.sources.set(d.path, await this.blksnap.driver.openImage(d.image, this.opts.imageTimeoutMs));
  }

  private get eventTimeout(): number {
    return this.opts.eventTimeout ?? DEFAULT_EVENT_TIMEOUT;
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.opts.onWarning?.(message);
  }

  /** Allocate and append up to `bytes` more storage; false when the limit is reached. */
  private async grow(bytes: number): Promise<boolean> {
    const a = await this.storage.allocate(bytes);
    if (!a) return false;
    await this.snapshot.appendStorage(this.storage.device.dev, a.ranges);
    return true;
  }

  private async eventLoop(): Promise<void> {
    while (!this.closing) {
      let ev: SnapshotEvent | null;
      try {
        ev = await this.snapshot.waitEvent(this.eventTimeout);
      } catch (e) {
        if (!this.closing) {
          this.loopError = e;
          this.warn(`stopped listening to snapshot ${this.snapshot.label} events: ${(e as Error).message}`);
        }
        return;
      }
      if (ev) await this.enqueue(ev);
    }
  }

  private enqueue(ev: SnapshotEvent): Promise<void> {
    this.handling = this.handling.then(() => this.handle(ev)).catch((e: unknown) => {
      this.loopError = e;
      this.warn(`handling a snapshot event failed: ${(e as Error).message}`);
    });
    return this.handling;
  }

  private async handle(ev: SnapshotEvent): Promise<void> {
    if (ev.kind === 'low-free-space') {
      if (this.exhausted || this.closing) return;
      if (!(await this.grow(ev.requestedSectors * SECTOR_SIZE))) {
        this.exhausted = true;
        this.warn(`difference storage reached its limit (${this.storage.allocated} bytes in ${this.storage.dir}); the snapshot will overflow if the devices keep changing`);
      }
    } else if (ev.kind === 'corrupted') {
      const key = devKey(ev.dev);
      if (this.corruptions.has(key)) return;
      this.corruptions.set(key, ev.errCode);
      const d = this.devs.find((x) => sameDev(x.dev, ev.dev));
      this.warn(`snapshot of ${d?.path ?? key} overflowed (error ${ev.errCode}): its image can no longer be trusted`);
    }
  }

  /** Process every event the module has queued now. */
  async settle(): Promise<void> {
    if (this.closing) return;
    for (;;) {
      let ev: SnapshotEvent | null;
      try {
        ev = await this.snapshot.waitEvent(0);
      } catch (e) {
        this.loopError ??= e;
        break;
      }
      if (!ev) break;
      await this.enqueue(ev);
    }
    await this.handling;
  }

  get devices(): readonly SessionDevice[] {
    return this.devs;
  }

  device(path: string): SessionDevice {
    const d = this.devs.find((x) => x.path === path);
    if (!d) throw new Error(`${path} is not part of snapshot ${this.snapshot.label}`);
    return d;
  }

  /** The snapshot image of `path`, as snapshot-time content; reads fail with SnapshotOverflowError once it overflowed. */
  source(path: string): BlockSource {
    const d = this.device(path);
    const inner = this.sources.get(path);
    if (!inner) throw new Error(`image of ${path} is not open`);
    return {
      path: d.path,
      size: inner.size,
      logicalBlockSize: inner.logicalBlockSize,
      read: async (buffer, length, position) => {
        this.throwIfCorrupted(d);
        try {
          return await inner.read(buffer, length, position);
        } catch (e) {
          if (isSystemError(e, 'EIO')) {
            await this.settle();
            this.throwIfCorrupted(d);
          }
          throw e;
        }
      },
      close: async () => undefined, // the session closes images
    };
  }

  private throwIfCorrupted(d: SessionDevice): void {
    const err = this.corruptions.get(devKey(d.dev));
    if (err !== undefined) {
      throw new SnapshotOverflowError(`the snapshot of ${d.path} overflowed its difference storage (error ${err}; limit ${this.opts.diffStorageLimit} bytes in ${this.storage.dir}): the backup of ${d.path} failed; raise --diff-storage-limit or back up when the device is quieter`);
    }
  }

  /** The overflow error code recorded for the device, if its snapshot overflowed. */
  corrupted(path: string): number | undefined {
    return this.corruptions.get(devKey(this.device(path).dev));
  }

  /** Drain pending events, then throw SnapshotOverflowError if the device's image overflowed. Call before committing. */
  async assertIntact(path: string): Promise<void> {
    await this.settle();
    this.throwIfCorrupted(this.device(path));
  }

  /** True once a low-free-space request could not be met within the limit. */
  get storageExhausted(): boolean {
    return this.exhausted;
  }

  /** An error that stopped event handling (the snapshot vanished, storage could not be appended). */
  get eventError(): unknown {
    return this.loopError;
  }

  cbt(path: string): CbtInfo {
    return this.device(path).cbt;
  }

  /** The device's CBT map; only possible before close(). */
  readCbtMap(path: string): Promise<Uint8Array> {
    const d = this.device(path);
    return this.blksnap.readCbtMap(d.dev, d.path);
  }

  /**
   * Close the images, DESTROY the snapshot, remove the difference files. Always does all three;
   * idempotent (the same promise every time), so error paths and signal handlers can all call it.
   */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    let failure: unknown;
    for (const src of this.sources.values()) await src.close().catch((e: unknown) => (failure ??= e));
    this.sources.clear();
    try {
      await this.snapshot.destroy();
    } catch (e) {
      failure ??= e;
    }
    await this.storage.remove().catch((e: unknown) => (failure ??= e));
    // The loop's last WAIT_EVENT returns within eventTimeout jiffies; nothing to wait for here.
    void this.loop;
    if (failure !== undefined) throw failure;
  }
}
