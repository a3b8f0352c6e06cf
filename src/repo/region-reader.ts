/**
 * Reads back what an index says one region holds: its base (zeros or one chunk) with its patch
 * laid over the patched pieces, every chunk checked against the id the index names. The digest
 * fallback compares a changed region with it to store only the pieces that changed.
 */
import type { Repository } from './repository.js';
import { packKey } from './pack.js';
import { patchRuns, type BackupIndex } from './index-file.js';
import { SharedReads, type CodecPool } from './codec-pool.js';
import { ObjectMissingError } from '../storage/target.js';

export class RegionReader {
  private readonly reads = new SharedReads(2, 0);
  private scratch: ArrayBuffer | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly pool: CodecPool,
    private readonly index: BackupIndex,
  ) {}

  /**
   * Region `i` into `dest` at `destOffset`. The buffer travels to a worker and back: use the one
   * returned, also when `error` says a chunk (ref `ref` of the index) could not be read or failed
   * its checks.
   */
  async read(i: number, dest: ArrayBuffer, destOffset: number): Promise<{ buf: ArrayBuffer; error?: string; ref?: number }> {
    const e = this.index.entries;
    const regionLength = e.regionLength(i);
    let buf = dest;
    if (e.baseIsData(i)) {
      const r = await this.chunk(2 * i, buf, destOffset);
      buf = r.buf;
      if (r.error) return { buf, error: r.error, ref: 2 * i };
    } else {
      new Uint8Array(buf, destOffset, regionLength).fill(0);
    }
    if (e.hasPatch(i)) {
      const plain = e.refPlain(2 * i + 1);
      const r = await this.chunk(2 * i + 1, this.scratch && this.scratch.byteLength >= plain ? this.scratch : new ArrayBuffer(plain), 0);
      this.scratch = r.buf;
      if (r.error) return { buf, error: r.error, ref: 2 * i + 1 };
      const from = new Uint8Array(this.scratch, 0, plain);
      const to = new Uint8Array(buf, destOffset, regionLength);
      let at = 0;
      for (const run of patchRuns(0, e.patchMask(i), this.index.header.pieceSize, regionLength)) {
        to.set(from.subarray(at, at + run.length), run.offset);
        at += run.length;
      }
    }
    return { buf };
  }

  private async chunk(r: number, dest: ArrayBuffer, destOffset: number): Promise<{ buf: ArrayBuffer; error?: string }> {
    const e = this.index.entries;
    const packId = this.index.packs[e.refPack(r)]!;
    const length = e.refLength(r);
    const sab = this.reads.acquire(length);
    try {
      let data: Buffer;
      try {
        data = await this.repo.target.get(packKey(packId), { offset: e.refOffset(r), length }, new Uint8Array(sab, 0, length));
      } catch (err) {
        if (err instanceof ObjectMissingError) return { buf: dest, error: `pack ${packId} is missing` };
        throw err;
      }
      if (data.length !== length) return { buf: dest, error: `pack ${packId} is truncated` };
      const res = await this.pool.open(sab, 0, length, dest, destOffset, e.refId(r), e.refPlain(r));
      return res.error ? { buf: res.dest, error: `chunk ${e.refId(r).toString('hex').slice(0, 16)} in pack ${packId} is damaged (${res.error})` } : { buf: res.dest };
    } finally {
      this.reads.release(sab);
    }
  }
}
