/**
 * The typed blksnap API: one method per control, the collection protocols, errno → typed errors.
 * Talks to the kernel (or the fake) only through a BlksnapDriver.
 */
import { isSystemError } from '../errors.js';
import * as abi from './abi.js';
import type { CbtInfo, DevId, ImageInfo, IoctlName, SectorRange, SnapshotEvent, Version } from './abi.js';
import type { BlksnapDriver, PointerArg } from './driver.js';
import { blksnapError, CbtMapUnavailableError, NotTrackedError } from './errors.js';

/** READ_CBT_MAP is issued in pieces of at most this many bytes. */
export const CBT_MAP_PIECE = 1024 * 1024;
/** Retries of a collection whose count keeps growing between the two calls. */
const COLLECT_RETRIES = 8;

export class Blksnap {
  constructor(readonly driver: BlksnapDriver) {}

  /** Issue one control, turning errno into the typed error for `op` on `what`. */
  async control(op: IoctlName, arg: Buffer, pointers: readonly PointerArg[], what: string): Promise<number> {
    try {
      return await this.driver.ioctl(abi.IOCTL[op], arg, pointers);
    } catch (e) {
      throw blksnapError(e, op, what);
    }
  }

  /** Like control(), but a system error with the given codes is returned instead of thrown. */
  private async controlAllowing(op: IoctlName, arg: Buffer, pointers: readonly PointerArg[], codes: readonly string[], what: string): Promise<number | string> {
    try {
      return await this.driver.ioctl(abi.IOCTL[op], arg, pointers);
    } catch (e) {
      if (isSystemError(e) && codes.includes(e.code)) return e.code;
      throw blksnapError(e, op, what);
    }
  }

  devIdOf(path: string): Promise<DevId> {
    return this.driver.resolveDevice(path);
  }

  async version(): Promise<Version> {
    const arg = Buffer.alloc(abi.SIZE.version);
    await this.control('VERSION', arg, [], this.driver.controlPath);
    return abi.decodeVersion(arg);
  }

  /**
   * The count protocol of TRACKER_COLLECT / SNAPSHOT_COLLECT / COLLECT_IMAGES: ask with a null
   * array for the count, then fetch; ENODATA means the count grew in between (retry).
   */
  private async collect(op: IoctlName, encode: (count: number) => Buffer, countAt: number, arrayAt: number, itemSize: number, what: string): Promise<{ count: number; array: Buffer }> {
    const ask = encode(0);
    await this.control(op, ask, [], what);
    let count = ask.readUInt32LE(countAt);
    for (let i = 0; i < COLLECT_RETRIES; i++) {
      if (count === 0) return { count: 0, array: Buffer.alloc(0) };
      const arg = encode(count);
      const array = Buffer.alloc(count * itemSize);
      const r = await this.controlAllowing(op, arg, [{ at: arrayAt, buffer: array }], ['ENODATA'], what);
      const got = arg.readUInt32LE(countAt);
      if (r !== 'ENODATA') return { count: Math.min(got, count), array };
      count = Math.max(got, count + 1);
    }
    throw blksnapError(Object.assign(new Error('ENODATA: collection kept growing'), { code: 'ENODATA' }), op, what);
  }

  /** Every tracked device with its CBT info (TRACKER_COLLECT). */
  async trackers(): Promise<CbtInfo[]> {
    const { count, array } = await this.collect('TRACKER_COLLECT', abi.encodeCollect, abi.OFFSET.trackerCollect.count, abi.OFFSET.trackerCollect.cbt_info_array, abi.SIZE.cbtInfo, 'trackers');
    return abi.decodeCbtInfos(array, count);
  }

  async tracker(dev: DevId): Promise<CbtInfo | undefined> {
    return (await this.trackers()).find((t) => abi.sameDev(t.dev, dev));
  }

  /**
   * The whole CBT map of a device (one byte per block), read in pieces of CBT_MAP_PIECE bytes.
   * Works only while a snapshot of the device is taken (else CbtMapUnavailableError); a device
   * without a tracker gives NotTrackedError.
   */
  async readCbtMap(dev: DevId, what = abi.devKey(dev)): Promise<Uint8Array> {
    const info = await this.tracker(dev);
    if (!info) throw new NotTrackedError(`${what} is not tracked by blksnap (no snapshot of it since the module was loaded): a full backup is needed`);
    const map = Buffer.alloc(info.blkCount);
    let offset = 0;
    while (offset < info.blkCount) {
      const length = Math.min(CBT_MAP_PIECE, info.blkCount - offset);
      const piece = map.subarray(offset, offset + length);
      const rc = await this.control('TRACKER_READ_CBT_MAP', abi.encodeReadCbtBitmap({ dev, offset, length }), [{ at: abi.OFFSET.readCbtBitmap.buff, buffer: piece }], what);
      if (rc <= 0) break;
      offset += rc;
    }
    // a short map would make unread blocks look unchanged: never return one
    if (offset < info.blkCount) throw new CbtMapUnavailableError(`the CBT map of ${what} could be read only to block ${offset} of ${info.blkCount}`);
    return new Uint8Array(map.buffer, map.byteOffset, map.length);
  }

  /** Mark sector ranges changed in both maps (e.g. after writing to an image). */
  async markDirty(dev: DevId, ranges: readonly SectorRange[], what = abi.devKey(dev)): Promise<void> {
    if (ranges.length === 0) return;
    await this.control('TRACKER_MARK_DIRTY_BLOCKS', abi.encodeMarkDirty(dev, ranges.length), [{ at: abi.OFFSET.markDirty.dirty_blocks_array, buffer: abi.encodeBlockRanges(ranges) }], what);
  }

  /** Stop tracking a device; its change history is gone (the next backup is full). */
  async removeTracker(dev: DevId, what = abi.devKey(dev)): Promise<void> {
    await this.control('TRACKER_REMOVE', abi.encodeTrackerRemove(dev), [], what);
  }

  /** Ids of all snapshots the module holds. */
  async snapshots(): Promise<string[]> {
    const { count, array } = await this.collect('SNAPSHOT_COLLECT', abi.encodeCollect, abi.OFFSET.snapshotCollect.count, abi.OFFSET.snapshotCollect.ids, abi.UUID_SIZE, 'snapshots');
    return abi.decodeUuids(array, count);
  }

  /** CREATE a snapshot of the devices. */
  createSnapshot(devs: readonly DevId[]): Promise<Snapshot> {
    return Snapshot.create(this, devs);
  }

  /** A handle on an existing snapshot id. */
  snapshot(id: string): Snapshot {
    return new Snapshot(this, id);
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}

export class Snapshot {
  private destroyed = false;

  constructor(
    readonly blksnap: Blksnap,
    readonly id: string,
  ) {}

  get label(): string {
    return abi.formatUuid(this.id);
  }

  static async create(blksnap: Blksnap, devs: readonly DevId[]): Promise<Snapshot> {
    const arg = abi.encodeSnapshotCreate(devs.length);
    await blksnap.control('SNAPSHOT_CREATE', arg, [{ at: abi.OFFSET.snapshotCreate.dev_id_array, buffer: abi.encodeDevIds(devs) }], devs.map(abi.devKey).join(', '));
    return new Snapshot(blksnap, abi.decodeSnapshotCreate(arg).id);
  }

  /** Add sector ranges on device `dev` to the difference storage. */
  async appendStorage(dev: DevId, ranges: readonly SectorRange[]): Promise<void> {
    await this.blksnap.control('SNAPSHOT_APPEND_STORAGE', abi.encodeAppendStorage(this.id, dev, ranges.length), [{ at: abi.OFFSET.appendStorage.ranges, buffer: abi.encodeBlockRanges(ranges) }], this.label);
  }

  async take(): Promise<void> {
    await this.blksnap.control('SNAPSHOT_TAKE', abi.encodeSnapshotId(this.id), [], this.label);
  }

  /** Original → image device pairs (only after take). */
  async images(): Promise<ImageInfo[]> {
    const ask = abi.encodeCollectImages(this.id, 0);
    await this.blksnap.control('SNAPSHOT_COLLECT_IMAGES', ask, [], this.label);
    let count = abi.decodeCollectImages(ask).count;
    for (let i = 0; i < COLLECT_RETRIES && count > 0; i++) {
      const arg = abi.encodeCollectImages(this.id, count);
      const array = Buffer.alloc(count * abi.SIZE.imageInfo);
      try {
        await this.blksnap.driver.ioctl(abi.IOCTL.SNAPSHOT_COLLECT_IMAGES, arg, [{ at: abi.OFFSET.collectImages.image_info_array, buffer: array }]);
        return abi.decodeImageInfos(array, Math.min(count, abi.decodeCollectImages(arg).count));
      } catch (e) {
        if (!isSystemError(e, 'ENODATA')) throw blksnapError(e, 'SNAPSHOT_COLLECT_IMAGES', this.label);
        count = Math.max(abi.decodeCollectImages(arg).count, count + 1);
      }
    }
    return [];
  }

  /**
   * Wait for the next event. `timeout` is in jiffies (the header calls it milliseconds; the module
   * passes it to the scheduler as is): an upper bound. Resolves null when nothing came (ENOENT)
   * or the wait was interrupted (EINTR).
   */
  async waitEvent(timeout: number): Promise<SnapshotEvent | null> {
    const arg = abi.encodeWaitEvent(this.id, timeout);
    try {
      await this.blksnap.driver.ioctl(abi.IOCTL.SNAPSHOT_WAIT_EVENT, arg, []);
    } catch (e) {
      if (isSystemError(e, 'ENOENT') || isSystemError(e, 'EINTR')) return null;
      throw blksnapError(e, 'SNAPSHOT_WAIT_EVENT', this.label);
    }
    return abi.decodeEvent(arg);
  }

  /**
   * Release the snapshot, its images and storage. Idempotent: a snapshot that is already gone
   * (ENODEV) is fine. Resolves true when this call destroyed it.
   */
  async destroy(): Promise<boolean> {
    if (this.destroyed) return false;
    try {
      await this.blksnap.driver.ioctl(abi.IOCTL.SNAPSHOT_DESTROY, abi.encodeSnapshotId(this.id), []);
      this.destroyed = true;
      return true;
    } catch (e) {
      if (isSystemError(e, 'ENODEV') || isSystemError(e, 'ESRCH')) {
        this.destroyed = true;
        return false;
      }
      throw blksnapError(e, 'SNAPSHOT_DESTROY', this.label);
    }
  }
}
