/**
 * Pure planning of a device backup: how the device is cut into chunks, and which chunks must be
 * read given what changed. No I/O here.
 */

export interface ChunkRange {
  index: number;
  offset: number;
  length: number;
}

export function chunkCount(deviceSize: number, chunkSize: number): number {
  return Math.ceil(deviceSize / chunkSize);
}

export function chunkRange(index: number, deviceSize: number, chunkSize: number): ChunkRange {
  const offset = index * chunkSize;
  return { index, offset, length: Math.min(chunkSize, deviceSize - offset) };
}

/** Every chunk of the device, in order. */
export function allChunks(deviceSize: number, chunkSize: number): number[] {
  return Array.from({ length: chunkCount(deviceSize, chunkSize) }, (_, i) => i);
}

/**
 * The chunks that overlap any changed CBT block. `changed(i)` says whether CBT block i changed.
 * CBT blocks may be larger or smaller than chunks; both are handled by overlap.
 */
export function chunksFromChangedBlocks(
  deviceSize: number,
  chunkSize: number,
  cbtBlockSize: number,
  cbtBlockCount: number,
  changed: (block: number) => boolean,
): number[] {
  const out: number[] = [];
  const n = chunkCount(deviceSize, chunkSize);
  let last = -1;
  for (let b = 0; b < cbtBlockCount; b++) {
    if (!changed(b)) continue;
    const start = b * cbtBlockSize;
    if (start >= deviceSize) break;
    const end = Math.min(deviceSize, start + cbtBlockSize);
    const first = Math.max(Math.floor(start / chunkSize), last + 1);
    const lastChunk = Math.min(n - 1, Math.floor((end - 1) / chunkSize));
    for (let c = first; c <= lastChunk; c++) out.push(c);
    if (lastChunk > last) last = lastChunk;
  }
  return out;
}
