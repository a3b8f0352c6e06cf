/**
 * The blksnap v1 ABI (shared/seeds/blk_snap.h, x86_64, little-endian): ioctl numbers and pure
 * encoders of what bkp sends and decoders of what the module writes back. The other half (what
 * the kernel decodes and encodes) lives with the fake, in test/support/blksnap/kernel-abi.ts.
 *
 * Pointer fields are left zero here: callers pass `{at: <OFFSET>, buffer}` to the driver, which
 * (native/) writes the buffer's address there. A pointer that is not passed stays null.
 * native/src/abi_check.cc asserts these sizes, offsets and numbers at compile time, and
 * test/blksnap/abi.test.ts checks them against native/abi-dump.c.
 */

/** struct blk_snap_dev_t: major and minor as two u32 (not the kernel's dev_t encoding). */
export interface DevId {
  major: number;
  minor: number;
}

/** struct blk_snap_block_range, in 512-byte sectors. */
export interface SectorRange {
  sector: number;
  count: number;
}

export const SECTOR_SIZE = 512;
export const UUID_SIZE = 16;

export const SIZE = {
  version: 8,
  devId: 8,
  trackerRemove: 8,
  cbtInfo: 48,
  trackerCollect: 16,
  readCbtBitmap: 24,
  blockRange: 16,
  markDirty: 24,
  snapshotCreate: 32,
  snapshotDestroy: 16,
  appendStorage: 40,
  snapshotTake: 16,
  snapshotCollect: 16,
  imageInfo: 16,
  collectImages: 32,
  event: 4096,
  eventLowFreeSpace: 8,
  eventCorrupted: 12,
} as const;

/** Field offsets, named after the header's fields. */
export const OFFSET = {
  version: { major: 0, minor: 2, revision: 4, build: 6 },
  devId: { mj: 0, mn: 4 },
  trackerRemove: { dev_id: 0 },
  cbtInfo: { dev_id: 0, blk_size: 8, device_capacity: 16, blk_count: 24, generation_id: 28, snap_number: 44 },
  trackerCollect: { count: 0, cbt_info_array: 8 },
  readCbtBitmap: { dev_id: 0, offset: 8, length: 12, buff: 16 },
  blockRange: { sector_offset: 0, sector_count: 8 },
  markDirty: { dev_id: 0, count: 8, dirty_blocks_array: 16 },
  snapshotCreate: { count: 0, dev_id_array: 8, id: 16 },
  snapshotDestroy: { id: 0 },
  appendStorage: { id: 0, dev_id: 16, count: 24, ranges: 32 },
  snapshotTake: { id: 0 },
  snapshotCollect: { count: 0, ids: 8 },
  imageInfo: { orig_dev_id: 0, image_dev_id: 8 },
  collectImages: { id: 0, count: 16, image_info_array: 24 },
  event: { id: 0, timeout_ms: 16, code: 20, time_label: 24, data: 32 },
  eventLowFreeSpace: { requested_nr_sect: 0 },
  eventCorrupted: { orig_dev_id: 0, err_code: 8 },
} as const;

/** The header's C struct names, for checking against native/abi-dump.c. */
export const C_STRUCT: Record<keyof typeof SIZE, string> = {
  version: 'blk_snap_version',
  devId: 'blk_snap_dev_t',
  trackerRemove: 'blk_snap_tracker_remove',
  cbtInfo: 'blk_snap_cbt_info',
  trackerCollect: 'blk_snap_tracker_collect',
  readCbtBitmap: 'blk_snap_tracker_read_cbt_bitmap',
  blockRange: 'blk_snap_block_range',
  markDirty: 'blk_snap_tracker_mark_dirty_blocks',
  snapshotCreate: 'blk_snap_snapshot_create',
  snapshotDestroy: 'blk_snap_snapshot_destroy',
  appendStorage: 'blk_snap_snapshot_append_storage',
  snapshotTake: 'blk_snap_snapshot_take',
  snapshotCollect: 'blk_snap_snapshot_collect',
  imageInfo: 'blk_snap_image_info',
  collectImages: 'blk_snap_snapshot_collect_images',
  event: 'blk_snap_snapshot_event',
  eventLowFreeSpace: 'blk_snap_event_low_free_space',
  eventCorrupted: 'blk_snap_event_corrupted',
};

// _IOC from <asm-generic/ioctl.h>: nr 8 bits, type 8 bits, size 14 bits, dir 2 bits.
const IOC_WRITE = 1;
const IOC_READ = 2;
const BLK_SNAP = 'V'.charCodeAt(0);
function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) >>> 0) + ((size & 0x3fff) << 16) + (BLK_SNAP << 8) + nr;
}
const IOW = (nr: number, size: number) => ioc(IOC_WRITE, nr, size);
const IOR = (nr: number, size: number) => ioc(IOC_READ, nr, size);

/** The 12 controls, with the header's (sometimes odd) directions. */
export const IOCTL = {
  VERSION: IOW(0, SIZE.version),
  TRACKER_REMOVE: IOW(1, SIZE.trackerRemove),
  TRACKER_COLLECT: IOW(2, SIZE.trackerCollect),
  TRACKER_READ_CBT_MAP: IOR(3, SIZE.readCbtBitmap),
  TRACKER_MARK_DIRTY_BLOCKS: IOR(4, SIZE.markDirty),
  SNAPSHOT_CREATE: IOW(5, SIZE.snapshotCreate),
  SNAPSHOT_DESTROY: IOR(6, SIZE.snapshotDestroy),
  SNAPSHOT_APPEND_STORAGE: IOW(7, SIZE.appendStorage),
  SNAPSHOT_TAKE: IOR(8, SIZE.snapshotTake),
  SNAPSHOT_COLLECT: IOW(9, SIZE.snapshotCollect),
  SNAPSHOT_COLLECT_IMAGES: IOW(10, SIZE.collectImages),
  SNAPSHOT_WAIT_EVENT: IOW(11, SIZE.event),
} as const;

export type IoctlName = keyof typeof IOCTL;

export const EVENT_CODE = { LOW_FREE_SPACE: 0, CORRUPTED: 1 } as const;

// --- primitives ---

export function devKey(d: DevId): string {
  return `${d.major}:${d.minor}`;
}

export function sameDev(a: DevId, b: DevId): boolean {
  return a.major === b.major && a.minor === b.minor;
}

function writeU64(buf: Buffer, at: number, v: number | bigint): void {
  buf.writeBigUInt64LE(BigInt(v), at);
}

/** u64 that must fit a JS number (sizes, sectors): a larger value is a bug or a corrupt struct. */
function readU64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`u64 at ${at} too large: ${v}`);
  return Number(v);
}

export function writeDevId(buf: Buffer, at: number, d: DevId): void {
  buf.writeUInt32LE(d.major, at + OFFSET.devId.mj);
  buf.writeUInt32LE(d.minor, at + OFFSET.devId.mn);
}

export function readDevId(buf: Buffer, at: number): DevId {
  return { major: buf.readUInt32LE(at + OFFSET.devId.mj), minor: buf.readUInt32LE(at + OFFSET.devId.mn) };
}

/** A uuid as 32 lowercase hex digits. */
export function writeUuid(buf: Buffer, at: number, id: string): void {
  if (!/^[0-9a-f]{32}$/i.test(id)) throw new Error(`bad uuid ${id}`);
  Buffer.from(id, 'hex').copy(buf, at);
}

export function readUuid(buf: Buffer, at: number): string {
  return buf.subarray(at, at + UUID_SIZE).toString('hex');
}

/** The canonical 8-4-4-4-12 form, for messages. */
export function formatUuid(id: string): string {
  return `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`;
}

// --- structs ---

export interface Version {
  major: number;
  minor: number;
  revision: number;
  build: number;
}

export function decodeVersion(b: Buffer): Version {
  return {
    major: b.readUInt16LE(OFFSET.version.major),
    minor: b.readUInt16LE(OFFSET.version.minor),
    revision: b.readUInt16LE(OFFSET.version.revision),
    build: b.readUInt16LE(OFFSET.version.build),
  };
}

export function encodeTrackerRemove(dev: DevId): Buffer {
  const b = Buffer.alloc(SIZE.trackerRemove);
  writeDevId(b, OFFSET.trackerRemove.dev_id, dev);
  return b;
}

/** struct blk_snap_cbt_info. */
export interface CbtInfo {
  dev: DevId;
  /** Bytes per tracking block. */
  blkSize: number;
  /** Bytes. */
  deviceCapacity: number;
  blkCount: number;
  /** 32 hex digits. */
  generationId: string;
  /** The number of the snapshot last taken (the tracker's *previous* number). */
  snapNumber: number;
}

export function decodeCbtInfos(b: Buffer, count: number): CbtInfo[] {
  const out: CbtInfo[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * SIZE.cbtInfo;
    out.push({
      dev: readDevId(b, at + OFFSET.cbtInfo.dev_id),
      blkSize: b.readUInt32LE(at + OFFSET.cbtInfo.blk_size),
      deviceCapacity: readU64(b, at + OFFSET.cbtInfo.device_capacity),
      blkCount: b.readUInt32LE(at + OFFSET.cbtInfo.blk_count),
      generationId: readUuid(b, at + OFFSET.cbtInfo.generation_id),
      snapNumber: b.readUInt8(at + OFFSET.cbtInfo.snap_number),
    });
  }
  return out;
}

/** tracker_collect and snapshot_collect share this shape: count u32 at 0, array pointer at 8. */
export function encodeCollect(count: number): Buffer {
  const b = Buffer.alloc(SIZE.trackerCollect);
  b.writeUInt32LE(count, OFFSET.trackerCollect.count);
  return b;
}

export interface ReadCbtBitmap {
  dev: DevId;
  offset: number;
  length: number;
}

export function encodeReadCbtBitmap(r: ReadCbtBitmap): Buffer {
  const b = Buffer.alloc(SIZE.readCbtBitmap);
  writeDevId(b, OFFSET.readCbtBitmap.dev_id, r.dev);
  b.writeUInt32LE(r.offset, OFFSET.readCbtBitmap.offset);
  b.writeUInt32LE(r.length, OFFSET.readCbtBitmap.length);
  return b;
}

export function encodeBlockRanges(ranges: readonly SectorRange[]): Buffer {
  const b = Buffer.alloc(ranges.length * SIZE.blockRange);
  ranges.forEach((r, i) => {
    writeU64(b, i * SIZE.blockRange + OFFSET.blockRange.sector_offset, r.sector);
    writeU64(b, i * SIZE.blockRange + OFFSET.blockRange.sector_count, r.count);
  });
  return b;
}

export function encodeMarkDirty(dev: DevId, count: number): Buffer {
  const b = Buffer.alloc(SIZE.markDirty);
  writeDevId(b, OFFSET.markDirty.dev_id, dev);
  b.writeUInt32LE(count, OFFSET.markDirty.count);
  return b;
}

export function encodeDevIds(devs: readonly DevId[]): Buffer {
  const b = Buffer.alloc(devs.length * SIZE.devId);
  devs.forEach((d, i) => writeDevId(b, i * SIZE.devId, d));
  return b;
}

export function encodeSnapshotCreate(count: number): Buffer {
  const b = Buffer.alloc(SIZE.snapshotCreate);
  b.writeUInt32LE(count, OFFSET.snapshotCreate.count);
  return b;
}

export function decodeSnapshotCreate(b: Buffer): { count: number; id: string } {
  return { count: b.readUInt32LE(OFFSET.snapshotCreate.count), id: readUuid(b, OFFSET.snapshotCreate.id) };
}

/** struct blk_snap_snapshot_destroy and _take: just the id. */
export function encodeSnapshotId(id: string): Buffer {
  const b = Buffer.alloc(SIZE.snapshotDestroy);
  writeUuid(b, 0, id);
  return b;
}

export function encodeAppendStorage(id: string, dev: DevId, count: number): Buffer {
  const b = Buffer.alloc(SIZE.appendStorage);
  writeUuid(b, OFFSET.appendStorage.id, id);
  writeDevId(b, OFFSET.appendStorage.dev_id, dev);
  b.writeUInt32LE(count, OFFSET.appendStorage.count);
  return b;
}

export function decodeUuids(b: Buffer, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(readUuid(b, i * UUID_SIZE));
  return out;
}

export interface ImageInfo {
  orig: DevId;
  image: DevId;
}

export function decodeImageInfos(b: Buffer, count: number): ImageInfo[] {
  const out: ImageInfo[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      orig: readDevId(b, i * SIZE.imageInfo + OFFSET.imageInfo.orig_dev_id),
      image: readDevId(b, i * SIZE.imageInfo + OFFSET.imageInfo.image_dev_id),
    });
  }
  return out;
}

export function encodeCollectImages(id: string, count: number): Buffer {
  const b = Buffer.alloc(SIZE.collectImages);
  writeUuid(b, OFFSET.collectImages.id, id);
  b.writeUInt32LE(count, OFFSET.collectImages.count);
  return b;
}

export function decodeCollectImages(b: Buffer): { id: string; count: number } {
  return { id: readUuid(b, OFFSET.collectImages.id), count: b.readUInt32LE(OFFSET.collectImages.count) };
}

/** The request half of struct blk_snap_snapshot_event. `timeout` is named timeout_ms but is jiffies. */
export function encodeWaitEvent(id: string, timeout: number): Buffer {
  const b = Buffer.alloc(SIZE.event);
  writeUuid(b, OFFSET.event.id, id);
  b.writeUInt32LE(timeout, OFFSET.event.timeout_ms);
  return b;
}

export type SnapshotEvent =
  | { code: 0; kind: 'low-free-space'; timeLabel: bigint; requestedSectors: number }
  | { code: 1; kind: 'corrupted'; timeLabel: bigint; dev: DevId; errCode: number }
  | { code: number; kind: 'unknown'; timeLabel: bigint; data: Buffer };

export function decodeEvent(b: Buffer): SnapshotEvent {
  const code = b.readUInt32LE(OFFSET.event.code);
  const timeLabel = b.readBigInt64LE(OFFSET.event.time_label);
  const data = OFFSET.event.data;
  if (code === EVENT_CODE.LOW_FREE_SPACE) {
    return { code, kind: 'low-free-space', timeLabel, requestedSectors: readU64(b, data + OFFSET.eventLowFreeSpace.requested_nr_sect) };
  }
  if (code === EVENT_CODE.CORRUPTED) {
    return {
      code,
      kind: 'corrupted',
      timeLabel,
      dev: readDevId(b, data + OFFSET.eventCorrupted.orig_dev_id),
      errCode: b.readInt32LE(data + OFFSET.eventCorrupted.err_code),
    };
  }
  return { code, kind: 'unknown', timeLabel, data: Buffer.from(b.subarray(data)) };
}
