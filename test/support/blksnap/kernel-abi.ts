/**
 * The kernel's half of the blksnap v1 ABI, for the fake: decoders of the structs the module reads
 * and encoders of those it writes back — the mirror images of src/blksnap/abi.ts, which holds only
 * what bkp itself sends and reads. Re-exports abi.ts, so one import gives both directions.
 */
import { IOCTL, OFFSET, SIZE, UUID_SIZE, readDevId, readUuid, writeDevId, writeUuid } from '../../../src/blksnap/abi.js';
import type { CbtInfo, DevId, ImageInfo, IoctlName, ReadCbtBitmap, SectorRange, SnapshotEvent, Version } from '../../../src/blksnap/abi.js';

export * from '../../../src/blksnap/abi.js';

function writeU64(buf: Buffer, at: number, v: number | bigint): void {
  buf.writeBigUInt64LE(BigInt(v), at);
}

function readU64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`u64 at ${at} too large: ${v}`);
  return Number(v);
}

export function ioctlName(request: number): IoctlName | undefined {
  return (Object.keys(IOCTL) as IoctlName[]).find((k) => IOCTL[k] === request);
}

export function parseDevKey(s: string): DevId {
  const m = /^(\d+):(\d+)$/.exec(s);
  if (!m) throw new Error(`bad device id ${s}`);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

export function encodeVersion(v: Version): Buffer {
  const b = Buffer.alloc(SIZE.version);
  b.writeUInt16LE(v.major, OFFSET.version.major);
  b.writeUInt16LE(v.minor, OFFSET.version.minor);
  b.writeUInt16LE(v.revision, OFFSET.version.revision);
  b.writeUInt16LE(v.build, OFFSET.version.build);
  return b;
}

export function decodeTrackerRemove(b: Buffer): { dev: DevId } {
  return { dev: readDevId(b, OFFSET.trackerRemove.dev_id) };
}

export function encodeCbtInfos(infos: readonly CbtInfo[], into?: Buffer): Buffer {
  const b = into ?? Buffer.alloc(infos.length * SIZE.cbtInfo);
  infos.forEach((info, i) => {
    const at = i * SIZE.cbtInfo;
    b.fill(0, at, at + SIZE.cbtInfo);
    writeDevId(b, at + OFFSET.cbtInfo.dev_id, info.dev);
    b.writeUInt32LE(info.blkSize, at + OFFSET.cbtInfo.blk_size);
    writeU64(b, at + OFFSET.cbtInfo.device_capacity, info.deviceCapacity);
    b.writeUInt32LE(info.blkCount, at + OFFSET.cbtInfo.blk_count);
    writeUuid(b, at + OFFSET.cbtInfo.generation_id, info.generationId);
    b.writeUInt8(info.snapNumber, at + OFFSET.cbtInfo.snap_number);
  });
  return b;
}

export function decodeCollectCount(b: Buffer): number {
  return b.readUInt32LE(OFFSET.trackerCollect.count);
}

export function setCollectCount(b: Buffer, count: number): void {
  b.writeUInt32LE(count, OFFSET.trackerCollect.count);
}

export function decodeReadCbtBitmap(b: Buffer): ReadCbtBitmap {
  return {
    dev: readDevId(b, OFFSET.readCbtBitmap.dev_id),
    offset: b.readUInt32LE(OFFSET.readCbtBitmap.offset),
    length: b.readUInt32LE(OFFSET.readCbtBitmap.length),
  };
}

export function decodeBlockRanges(b: Buffer, count: number): SectorRange[] {
  const out: SectorRange[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      sector: readU64(b, i * SIZE.blockRange + OFFSET.blockRange.sector_offset),
      count: readU64(b, i * SIZE.blockRange + OFFSET.blockRange.sector_count),
    });
  }
  return out;
}

export function decodeMarkDirty(b: Buffer): { dev: DevId; count: number } {
  return { dev: readDevId(b, OFFSET.markDirty.dev_id), count: b.readUInt32LE(OFFSET.markDirty.count) };
}

export function decodeDevIds(b: Buffer, count: number): DevId[] {
  const out: DevId[] = [];
  for (let i = 0; i < count; i++) out.push(readDevId(b, i * SIZE.devId));
  return out;
}

export function setSnapshotCreateId(b: Buffer, id: string): void {
  writeUuid(b, OFFSET.snapshotCreate.id, id);
}

export function decodeSnapshotId(b: Buffer): string {
  return readUuid(b, 0);
}

export function decodeAppendStorage(b: Buffer): { id: string; dev: DevId; count: number } {
  return {
    id: readUuid(b, OFFSET.appendStorage.id),
    dev: readDevId(b, OFFSET.appendStorage.dev_id),
    count: b.readUInt32LE(OFFSET.appendStorage.count),
  };
}

export function encodeUuids(ids: readonly string[], into?: Buffer): Buffer {
  const b = into ?? Buffer.alloc(ids.length * UUID_SIZE);
  ids.forEach((id, i) => writeUuid(b, i * UUID_SIZE, id));
  return b;
}

export function encodeImageInfos(infos: readonly ImageInfo[], into?: Buffer): Buffer {
  const b = into ?? Buffer.alloc(infos.length * SIZE.imageInfo);
  infos.forEach((info, i) => {
    writeDevId(b, i * SIZE.imageInfo + OFFSET.imageInfo.orig_dev_id, info.orig);
    writeDevId(b, i * SIZE.imageInfo + OFFSET.imageInfo.image_dev_id, info.image);
  });
  return b;
}

export function setCollectImagesCount(b: Buffer, count: number): void {
  b.writeUInt32LE(count, OFFSET.collectImages.count);
}

export function decodeWaitEventRequest(b: Buffer): { id: string; timeout: number } {
  return { id: readUuid(b, OFFSET.event.id), timeout: b.readUInt32LE(OFFSET.event.timeout_ms) };
}

/** Write the reply half of the event (code, time_label, data) into a request buffer. */
export function setEventReply(b: Buffer, e: SnapshotEvent): void {
  b.writeUInt32LE(e.code, OFFSET.event.code);
  b.writeBigInt64LE(e.timeLabel, OFFSET.event.time_label);
  const data = OFFSET.event.data;
  b.fill(0, data);
  if (e.kind === 'low-free-space') writeU64(b, data + OFFSET.eventLowFreeSpace.requested_nr_sect, e.requestedSectors);
  else if (e.kind === 'corrupted') {
    writeDevId(b, data + OFFSET.eventCorrupted.orig_dev_id, e.dev);
    b.writeInt32LE(e.errCode, data + OFFSET.eventCorrupted.err_code);
  } else e.data.copy(b, data, 0, Math.min(e.data.length, SIZE.event - data));
}
