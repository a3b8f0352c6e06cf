/**
 * Pure restore planning: an index becomes runs of zeros and ranged reads of packs (neighbouring
 * envelopes of one pack merged into one read, up to a size limit), ordered by the first device
 * byte each op writes. Zero runs do not split a read: a backup stores the data chunks of a
 * device back to back in its packs whatever the zeros between them, so a read goes on across a
 * zero run and the run is its own op (each ranged read costs an open and a round trip, and
 * disks with scattered free space would otherwise restore in many small reads).
 */
import { patchRuns, type BackupIndex } from '../repo/index-file.js';

export interface ZeroRun {
  kind: 'zero';
  offset: number;
  length: number;
}

export interface PlannedChunk {
  /** Index of the region in the device. */
  index: number;
  /** Where the region starts on the device. */
  deviceOffset: number;
  plainLength: number;
  id: Buffer;
  /** Offset of the envelope inside the fetched range. */
  at: number;
  length: number;
  /** For a patch: the device runs its plaintext goes to, in order (their lengths add up to plainLength). */
  runs?: Array<{ offset: number; length: number }>;
  /** For a base under a patch: the device runs it alone provides (what is lost if it is damaged). */
  uncovered?: Array<{ offset: number; length: number }>;
}

export interface PackRead {
  kind: 'read';
  packId: string;
  offset: number;
  length: number;
  chunks: PlannedChunk[];
}

/** Every op before it must have finished writing before any op after it starts. */
export interface Barrier {
  kind: 'barrier';
}

export type RestoreOp = ZeroRun | PackRead | Barrier;

/**
 * The plan, op by op, as it is executed: an op is produced once complete, so memory holds the
 * ops in flight rather than one object per region of the device. Two passes: every region's base
 * (zeros or one chunk), then, after a barrier, the patches written over their pieces.
 */
export function* restorePlan(index: BackupIndex, maxReadBytes = 16 * 1024 * 1024): Generator<RestoreOp> {
  yield* pass(index, 0, maxReadBytes);
  const e = index.entries;
  let patched = false;
  for (let i = 0; i < e.length && !patched; i++) patched = e.hasPatch(i);
  if (!patched) return;
  yield { kind: 'barrier' };
  yield* pass(index, 1, maxReadBytes);
}

function* pass(index: BackupIndex, slot: 0 | 1, maxReadBytes: number): Generator<RestoreOp> {
  const { chunkSize, pieceSize } = index.header;
  const e = index.entries;
  // in order of first byte; only the last read can still grow (a read goes on across zero runs)
  const queue: RestoreOp[] = [];
  let zero: ZeroRun | undefined;
  let last: PackRead | undefined;
  for (let i = 0; i < e.length; i++) {
    const deviceOffset = i * chunkSize;
    const r = 2 * i + slot;
    if (!e.hasRef(r)) {
      if (slot === 1) continue;
      const regionLength = e.regionLength(i);
      if (zero) zero.length += regionLength;
      else queue.push((zero = { kind: 'zero', offset: deviceOffset, length: regionLength }));
      continue;
    }
    zero = undefined;
    const packId = index.packs[e.refPack(r)]!;
    const offset = e.refOffset(r);
    const length = e.refLength(r);
    const chunk: PlannedChunk = { index: i, deviceOffset, plainLength: e.refPlain(r), id: e.refId(r), at: 0, length };
    if (slot === 1) chunk.runs = patchRuns(deviceOffset, e.patchMask(i), pieceSize, e.regionLength(i));
    else if (e.hasPatch(i)) chunk.uncovered = patchRuns(deviceOffset, ~e.patchMask(i) & ((1n << 64n) - 1n), pieceSize, e.regionLength(i));
    if (last && last.packId === packId && last.offset + last.length === offset && last.length + length <= maxReadBytes) {
      chunk.at = last.length;
      last.chunks.push(chunk);
      last.length += length;
    } else {
      queue.push((last = { kind: 'read', packId, offset, length, chunks: [chunk] }));
    }
    while (queue.length > 0 && queue[0] !== last) yield queue.shift()!;
  }
  yield* queue;
}

/** The whole plan at once (for tests and small indexes). */
export function planRestore(index: BackupIndex, maxReadBytes?: number): RestoreOp[] {
  return [...restorePlan(index, maxReadBytes)];
}
