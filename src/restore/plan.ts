/**
 * Pure restore planning: an index becomes runs of zeros and ranged reads of packs (neighbouring
 * envelopes of one pack merged into one read, up to a size limit), ordered by the first device
 * byte each op writes. Zero runs do not split a read: a backup stores the data chunks of a
 * device back to back in its packs whatever the zeros between them, so a read goes on across a
 * zero run and the run is its own op (each ranged read costs an open and a round trip, and
 * disks with scattered free space would otherwise restore in many small reads).
 */
import { ENTRY_DATA, type BackupIndex } from '../repo/index-file.js';

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

export function planRestore(index: BackupIndex, maxReadBytes = 16 * 1024 * 1024): RestoreOp[] {
  const ops: RestoreOp[] = [];
  const { chunkSize } = index.header;
  let zero: ZeroRun | undefined;
  let last: PackRead | undefined;
  index.entries.forEach((e, i) => {
    const deviceOffset = i * chunkSize;
    if (e.kind !== ENTRY_DATA) {
      if (zero && zero.offset + zero.length === deviceOffset) zero.length += e.plainLength;
      else ops.push((zero = { kind: 'zero', offset: deviceOffset, length: e.plainLength }));
      return;
    }
    const packId = index.packs[e.packOrdinal]!;
    if (last && last.packId === packId && last.offset + last.length === e.offset && last.length + e.length <= maxReadBytes) {
      last.chunks.push({ index: i, deviceOffset, plainLength: e.plainLength, id: e.id, at: last.length, length: e.length });
      last.length += e.length;
      return;
    }
    ops.push(
      (last = {
        kind: 'read',
        packId,
        offset: e.offset,
        length: e.length,
        chunks: [{ index: i, deviceOffset, plainLength: e.plainLength, id: e.id, at: 0, length: e.length }],
      }),
    );
  });
  return ops;
}
