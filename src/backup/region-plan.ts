/**
 * Pure planning at piece granularity (docs/design/format-v2.md): a device is cut into regions
 * (the index's unit, `chunkSize` bytes), each region into pieces (`pieceSize` bytes, at most 64
 * per region). A region is stored as a base (zero, or one chunk of the whole region) plus at most
 * one patch: a chunk holding the pieces named by a 64-bit mask. No I/O here.
 */
import { patchRuns } from '../repo/index-file.js';

export const MAX_PIECES_PER_REGION = 64;

export interface RegionGeometry {
  deviceSize: number;
  regionSize: number;
  pieceSize: number;
}

export interface ByteRun {
  offset: number;
  length: number;
}

export function checkGeometry(g: RegionGeometry): void {
  if (!Number.isSafeInteger(g.deviceSize) || g.deviceSize < 0) throw new RangeError(`device size ${g.deviceSize}`);
  if (!Number.isSafeInteger(g.pieceSize) || g.pieceSize <= 0) throw new RangeError(`piece size ${g.pieceSize}`);
  if (!Number.isSafeInteger(g.regionSize) || g.regionSize <= 0 || g.regionSize % g.pieceSize !== 0) throw new RangeError(`region size ${g.regionSize} is not a multiple of the piece size ${g.pieceSize}`);
  if (g.regionSize / g.pieceSize > MAX_PIECES_PER_REGION) throw new RangeError(`more than ${MAX_PIECES_PER_REGION} pieces per region (${g.regionSize} / ${g.pieceSize})`);
}

export function regionCount(g: RegionGeometry): number {
  return Math.ceil(g.deviceSize / g.regionSize);
}

/** Bytes of region `r` (the last one may be short). */
export function regionLength(g: RegionGeometry, r: number): number {
  return Math.min(g.regionSize, g.deviceSize - r * g.regionSize);
}

/** Pieces that exist in region `r` (the last piece of the device may be short). */
export function pieceCount(g: RegionGeometry, r: number): number {
  return Math.ceil(regionLength(g, r) / g.pieceSize);
}

/** Every piece of region `r` as a mask. */
export function fullMask(g: RegionGeometry, r: number): bigint {
  return (1n << BigInt(pieceCount(g, r))) - 1n;
}

export function popcount(mask: bigint): number {
  let n = 0;
  for (let m = mask; m !== 0n; m &= m - 1n) n++;
  return n;
}

/**
 * The device byte runs of the pieces in `mask`, adjacent pieces merged, clipped to the device, in
 * device order. A run never leaves its region.
 */
export function maskRuns(g: RegionGeometry, r: number, mask: bigint): ByteRun[] {
  return patchRuns(r * g.regionSize, mask, g.pieceSize, regionLength(g, r));
}

/** Bytes covered by the pieces of `mask` in region `r`. */
export function maskBytes(g: RegionGeometry, r: number, mask: bigint): number {
  let n = 0;
  for (const run of maskRuns(g, r, mask)) n += run.length;
  return n;
}

/**
 * Region → mask of the pieces that overlap a changed CBT block, for every region with at least one.
 * `changed` lists changed CBT blocks ascending; CBT blocks may be larger or smaller than pieces
 * (a piece is marked when any changed block overlaps it).
 */
export function markedPieces(g: RegionGeometry, cbtBlockSize: number, changed: Iterable<number>): Map<number, bigint> {
  const out = new Map<number, bigint>();
  for (const b of changed) {
    const start = b * cbtBlockSize;
    if (start >= g.deviceSize) break;
    const end = Math.min(g.deviceSize, start + cbtBlockSize);
    const firstPiece = Math.floor(start / g.pieceSize);
    const lastPiece = Math.floor((end - 1) / g.pieceSize);
    const perRegion = g.regionSize / g.pieceSize;
    for (let p = firstPiece; p <= lastPiece; ) {
      const r = Math.floor(p / perRegion);
      const lastInRegion = Math.min(lastPiece, (r + 1) * perRegion - 1);
      const lo = p - r * perRegion;
      const hi = lastInRegion - r * perRegion;
      const bits = ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
      out.set(r, (out.get(r) ?? 0n) | bits);
      p = lastInRegion + 1;
    }
  }
  return out;
}

/**
 * The fragmentation policy: a patch may cover at most this share of a region's pieces; past it the
 * region is read (or taken) whole and becomes a new base. Keeps every region at base + one patch
 * and a restore at most 1.5x the region's bytes to decompress.
 */
export const MAX_PATCH_SHARE = 0.5;

export type RegionAction =
  /** Store the pieces of `mask` as one patch over the parent's base (reads: `runs`). */
  | { kind: 'patch'; mask: bigint; runs: ByteRun[] }
  /** Read / store the whole region as a new base, no patch. */
  | { kind: 'whole'; runs: ByteRun[] };

/**
 * What to do with region `r` whose pieces `changed` differ from the parent, which has a patch
 * over `parentPatch` (0n: none). The new patch must hold the union: its pieces are the region's
 * current bytes wherever either the parent's patch or this change applies.
 */
export function planRegion(g: RegionGeometry, r: number, parentPatch: bigint, changed: bigint): RegionAction {
  const all = fullMask(g, r);
  const union = (parentPatch | changed) & all;
  const whole = (): RegionAction => ({ kind: 'whole', runs: [{ offset: r * g.regionSize, length: regionLength(g, r) }] });
  if (union === all || popcount(union) > Math.floor(pieceCount(g, r) * MAX_PATCH_SHARE)) return whole();
  return { kind: 'patch', mask: union, runs: maskRuns(g, r, union) };
}

/**
 * Mask of the pieces of region `r` in which `a` and `b` (the region's bytes, from the device and
 * from the parent) differ.
 */
export function differingPieces(g: RegionGeometry, r: number, a: Uint8Array, b: Uint8Array): bigint {
  const len = regionLength(g, r);
  if (a.length < len || b.length < len) throw new RangeError('region buffers shorter than the region');
  let mask = 0n;
  const n = pieceCount(g, r);
  for (let p = 0; p < n; p++) {
    const s = p * g.pieceSize;
    const e = Math.min(len, s + g.pieceSize);
    if (Buffer.compare(a.subarray(s, e), b.subarray(s, e)) !== 0) mask |= 1n << BigInt(p);
  }
  return mask;
}
