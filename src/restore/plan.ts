/**
 * Pure restore planning: an index becomes runs of zeros and ranged reads of packs (neighbouring
 * envelopes of one pack merged into one read, up to a size limit), ordered by the first device
 * byte each op writes. Zero runs do not split a read: a backup stores the data chunks of a
 * device back to back in its packs whatever the zeros between them, so a read goes on across a
 * zero run and the run is its own op (each ranged read costs an open and a round trip, and
 * disks with scattered free space would otherwise restore in many small reads).
 */
import type { BackupIndex } from '../repo/index-file.js';

export interface ZeroRun {
  kind: 'zero';
  offset: number;
  length: number;
}

export interface PlannedChunk {
  /** Index of the chunk in the device. */
  index: number;
  deviceOffset: number;
  plainLength: number;
  id: Buffer;
  /** Offset of the envelope inside the fetched range. */
  at: number;
  length: number;
}

export interface PackRead {
  kind: 'read';
  packId: string;
  offset: number;
  length: number;
  chunks: PlannedChunk[];
}

export type RestoreOp = ZeroRun | PackRead;

/**
 * The plan, op by op, as it is executed: an op is produced once complete, so memory holds the
 * ops in flight rather than one object per chunk of the device.
 */
export function* restorePlan(index: BackupIndex, maxReadBytes = 16 * 1024 * 1024): Generator<RestoreOp> {
  const { chunkSize } = index.header;
  const e = index.entries;
  // in order of first byte; only the last read can still grow (a read goes on across zero runs)
  const queue: RestoreOp[] = [];
  let zero: ZeroRun | undefined;
  let last: PackRead | undefined;
  for (let i = 0; i < e.length; i++) {
    const deviceOffset = i * chunkSize;
    const plainLength = e.plainLength(i);
    if (!e.isData(i)) {
      if (zero) zero.length += plainLength;
      else queue.push((zero = { kind: 'zero', offset: deviceOffset, length: plainLength }));
      continue;
    }
    zero = undefined;
    const packId = index.packs[e.packOrdinal(i)]!;
    const offset = e.offset(i);
    const length = e.envelopeLength(i);
    const chunk = { index: i, deviceOffset, plainLength, id: e.id(i), at: 0, length };
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
