/** The chunks an index names, as plain objects, for tests that damage or inspect them. */
import { patchRuns, type BackupIndex } from '../../src/repo/index-file.js';

export interface RefInfo {
  /** Region. */
  i: number;
  /** Ref number: 2·region (base) or 2·region + 1 (patch). */
  r: number;
  packId: string;
  offset: number;
  length: number;
  plainLength: number;
  id: Buffer;
  /** Device byte ranges [start, end) whose restored bytes come from this chunk (a base under a patch: what the patch leaves). */
  ranges: Array<[number, number]>;
}

export function refsOf(index: BackupIndex): RefInfo[] {
  const e = index.entries;
  const { chunkSize, pieceSize } = index.header;
  const out: RefInfo[] = [];
  for (let r = 0; r < e.length * 2; r++) {
    if (!e.hasRef(r)) continue;
    const i = r >>> 1;
    const mask = r & 1 ? e.patchMask(i) : e.hasPatch(i) ? ~e.patchMask(i) & ((1n << 64n) - 1n) : (1n << 64n) - 1n;
    const ranges = patchRuns(i * chunkSize, mask, pieceSize, e.regionLength(i)).map((x): [number, number] => [x.offset, x.offset + x.length]);
    out.push({ i, r, packId: index.packs[e.refPack(r)]!, offset: e.refOffset(r), length: e.refLength(r), plainLength: e.refPlain(r), id: e.refId(r), ranges });
  }
  return out;
}
