/**
 * Pure restore planning: an index becomes, in device order, runs of zeros and ranged reads of
 * packs (neighbouring envelopes of one pack merged into one read, up to a size limit).
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
  let last: RestoreOp | undefined;
  index.entries.forEach((e, i) => {
    const deviceOffset = i * chunkSize;
    if (e.kind !== ENTRY_DATA) {
      if (last?.kind === 'zero' && last.offset + last.length === deviceOffset) last.length += e.plainLength;
      else ops.push((last = { kind: 'zero', offset: deviceOffset, length: e.plainLength }));
      return;
    }
    const packId = index.packs[e.packOrdinal]!;
    if (last?.kind === 'read' && last.packId === packId && last.offset + last.length === e.offset && last.length + e.length <= maxReadBytes) {
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
