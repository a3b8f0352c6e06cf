/**
 * Change block tracking as the blksnap module implements it (shared/docs/blksnap.md, "Change
 * tracking"): pure functions over a tracker's state. The fake runs its trackers with these, and
 * the incremental layer uses `incrementalBase` and `changedBlocks` to decide what to read.
 */
import { SECTOR_SIZE, type SectorRange } from './abi.js';

export const CBT_MIN_BLOCK_SIZE = 64 * 1024;
export const CBT_MAX_BLOCK_SIZE = 64 * 1024 * 1024;
export const CBT_MAX_BLOCK_COUNT = 2_097_152;
/** Change numbers are one byte; the active number restarts at 1 when it would reach this. */
export const CBT_NUMBER_WRAP = 256;

/** Block size: 64 KiB, doubled until the block count is at most 2,097,152 (at most 64 MiB). */
export function cbtGeometry(capacityBytes: number): { blkSize: number; blkCount: number } {
  let blkSize = CBT_MIN_BLOCK_SIZE;
  while (Math.ceil(capacityBytes / blkSize) > CBT_MAX_BLOCK_COUNT && blkSize < CBT_MAX_BLOCK_SIZE) blkSize *= 2;
  return { blkSize, blkCount: Math.ceil(capacityBytes / blkSize) };
}

export interface TrackerState {
  /** 32 hex digits. */
  generationId: string;
  /** Number of the snapshot last taken: what cbt_info.snap_number reports. */
  previous: number;
  /** Number written into the write map by new writes. */
  active: number;
  capacity: number;
  blkSize: number;
  blkCount: number;
  writeMap: Uint8Array;
  readMap: Uint8Array;
  /** Set when tracking failed (e.g. allocation failure): forces a reset at the next take. */
  corrupted: boolean;
}

export function newTracker(capacity: number, generationId: string): TrackerState {
  const { blkSize, blkCount } = cbtGeometry(capacity);
  return {
    generationId,
    previous: 0,
    active: 1,
    capacity,
    blkSize,
    blkCount,
    writeMap: new Uint8Array(blkCount),
    readMap: new Uint8Array(blkCount),
    corrupted: false,
  };
}

function raise(map: Uint8Array, first: number, last: number, value: number): void {
  for (let i = Math.max(0, first); i <= Math.min(last, map.length - 1); i++) if (map[i]! < value) map[i] = value;
}

/** A write of `length` bytes at byte `offset`: its blocks get the active number in the write map. */
export function trackWrite(t: TrackerState, offset: number, length: number): void {
  if (length <= 0) return;
  raise(t.writeMap, Math.floor(offset / t.blkSize), Math.floor((offset + length - 1) / t.blkSize), t.active);
}

/** TRACKER_MARK_DIRTY_BLOCKS: the write map gets the active number, the read map the previous one. */
export function markDirty(t: TrackerState, ranges: readonly SectorRange[]): void {
  for (const r of ranges) {
    if (r.count <= 0) continue;
    const first = Math.floor((r.sector * SECTOR_SIZE) / t.blkSize);
    const last = Math.floor(((r.sector + r.count) * SECTOR_SIZE - 1) / t.blkSize);
    raise(t.writeMap, first, last, t.active);
    raise(t.readMap, first, last, t.previous);
  }
}

/**
 * SNAPSHOT_TAKE for one tracker: reset first if the size changed or the map is corrupted, then
 * read map := write map, previous := active, active += 1; when active would reach 256 it restarts
 * at 1 with a zeroed write map and a new generation (the module's cbt_map_switch).
 */
export function takeSwitch(t: TrackerState, capacity: number, newGenerationId: () => string): TrackerState {
  let s = t;
  if (s.corrupted || s.capacity !== capacity) s = newTracker(capacity, newGenerationId());
  const next: TrackerState = { ...s, readMap: Uint8Array.from(s.writeMap), previous: s.active, active: s.active + 1 };
  if (next.active === CBT_NUMBER_WRAP) {
    next.active = 1;
    next.writeMap = new Uint8Array(s.blkCount);
    next.generationId = newGenerationId();
  }
  return next;
}

/** What a backup records about the CBT state at take time. */
export interface CbtPoint {
  generationId: string;
  snapNumber: number;
  blkSize: number;
  blkCount: number;
  deviceCapacity: number;
}

export type IncrementalDecision = { ok: true } | { ok: false; reason: string };

/**
 * Whether a backup at `current` can be an incremental on top of one at `base`: same generation,
 * a later number, same size and block size. Anything else means the history is gone.
 */
export function incrementalBase(base: CbtPoint, current: CbtPoint): IncrementalDecision {
  if (base.generationId !== current.generationId) return { ok: false, reason: 'the change-tracking generation changed (reboot, module reload, tracker reset, snapshot number wrapped at 255, or a corrupted map)' };
  if (current.snapNumber <= base.snapNumber) {
    // the take that wraps at 255 starts a new generation numbered 255; the next take is number 1
    const why = base.snapNumber === 255 ? 'wrapped at 255' : 'did not advance';
    return { ok: false, reason: `the snapshot number ${why} (${base.snapNumber} → ${current.snapNumber})` };
  }
  if (base.deviceCapacity !== current.deviceCapacity) return { ok: false, reason: 'the device size changed' };
  if (base.blkSize !== current.blkSize || base.blkCount !== current.blkCount) return { ok: false, reason: 'the CBT block size changed' };
  return { ok: true };
}

/** Indexes of the blocks changed since the backup numbered `baseSnapNumber`: read_map[i] > S. */
export function changedBlocks(readMap: Uint8Array, baseSnapNumber: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < readMap.length; i++) if (readMap[i]! > baseSnapNumber) out.push(i);
  return out;
}

/** The same as merged byte ranges on the device, clipped to its capacity. */
export function changedByteRanges(readMap: Uint8Array, baseSnapNumber: number, blkSize: number, capacity: number): Array<{ offset: number; length: number }> {
  const out: Array<{ offset: number; length: number }> = [];
  for (const i of changedBlocks(readMap, baseSnapNumber)) {
    const offset = i * blkSize;
    if (offset >= capacity) break;
    const end = Math.min(capacity, offset + blkSize);
    const last = out[out.length - 1];
    if (last && last.offset + last.length === offset) last.length = end - last.offset;
    else out.push({ offset, length: end - offset });
  }
  return out;
}
