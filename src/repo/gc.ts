/**
 * Garbage collection: remove packs that no committed index references and temporary files a
 * crash left behind; repack packs that are mostly garbage (their live envelopes are copied into
 * new packs, the indexes that use them are rewritten, then the old packs go). Runs under the
 * repository lock. Every step leaves the repository consistent: new packs are durable before any
 * index points at them, and an old pack is deleted only once no index does. Refuses to run when
 * an index cannot be read, since its packs would look unreferenced.
 */
import type { Repository, BackupRef } from './repository.js';
import { packIdFromKey, packKey } from './pack.js';
import type { BackupIndex } from './index-file.js';
import { openEnvelope } from './envelope.js';
import { PackWriter } from './pack-writer.js';
import type { ChunkLocation } from './chunk-map.js';
import { CorruptError, ObjectArchivedError } from '../errors.js';
import { crashPoint } from '../faults.js';
import { ARCHIVE_CLASSES } from '../storage/target.js';

export interface GcResult {
  packsKept: number;
  packsRemoved: number;
  bytesRemoved: number;
  packsRepacked: number;
  bytesRepacked: number;
  indexesRewritten: number;
  leftoversRemoved: number;
  dryRun: boolean;
}

export interface GcOptions {
  dryRun?: boolean;
  /** Repack a pack when less than this share of its bytes is still referenced (0 disables). */
  repackBelow?: number;
  /** Called before each change to the repository: throw to stop (the repository lock was lost). */
  checkLock?: () => Promise<void>;
}

async function readAll(repo: Repository): Promise<Array<{ ref: BackupRef; index: BackupIndex }>> {
  const out = [];
  for (const ref of await repo.listBackups()) {
    try {
      out.push({ ref, index: await repo.readIndex(ref) });
    } catch (e) {
      if (e instanceof CorruptError) {
        throw new CorruptError(`gc stopped: ${e.message}; run bkp verify, and remove that backup (or restore the index) before gc`);
      }
      throw e;
    }
  }
  return out;
}

export async function collectGarbage(repo: Repository, opts: GcOptions = {}): Promise<GcResult> {
  const dryRun = !!opts.dryRun;
  const result: GcResult = { packsKept: 0, packsRemoved: 0, bytesRemoved: 0, packsRepacked: 0, bytesRepacked: 0, indexesRewritten: 0, leftoversRemoved: 0, dryRun };
  let indexes = await readAll(repo);

  const sizes = new Map<string, number>();
  const archived = new Set<string>();
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (!id) continue;
    sizes.set(id, o.size);
    if (o.storageClass && ARCHIVE_CLASSES.has(o.storageClass)) archived.add(id);
  }

  // live envelopes of every pack: offset → (length, id, plain length)
  const live = new Map<string, Map<number, { length: number; id: Buffer; plainLength: number }>>();
  for (const { index } of indexes) {
    const t = index.entries;
    for (let r = 0; r < t.length * 2; r++) {
      if (!t.hasRef(r)) continue;
      const p = index.packs[t.refPack(r)]!;
      let m = live.get(p);
      if (!m) {
        m = new Map();
        live.set(p, m);
      }
      m.set(t.refOffset(r), { length: t.refLength(r), id: t.refId(r), plainLength: t.refPlain(r) });
    }
  }
  const threshold = opts.repackBelow ?? 0.5;
  const repack: string[] = [];
  for (const [p, m] of live) {
    const size = sizes.get(p);
    if (size === undefined) continue; // missing: verify reports it; nothing to repack
    if (archived.has(p)) continue; // cannot be read without a thaw: kept whole until no backup needs it
    let used = 0;
    for (const v of m.values()) used += v.length;
    if (used < size * threshold) repack.push(p);
  }

  if (repack.length > 0 && !dryRun) {
    const writer = new PackWriter(repo.target, repo.config.packSize);
    const moved = new Map<string, ChunkLocation>(); // "pack:offset" → new location
    for (const p of repack) {
      let data: Buffer;
      try {
        data = await repo.target.get(packKey(p));
      } catch (e) {
        // a pack moved to an archive tier behind bkp's back (e.g. S3 Intelligent-Tiering) cannot
        // be read now: keep it whole, repack the others
        if (e instanceof ObjectArchivedError) continue;
        throw e;
      }
      const entries = [...live.get(p)!.entries()];
      // a damaged envelope is not copied: the pack is kept as it is and verify will name it
      const ok = entries.every(([off, v]) => {
        try {
          openEnvelope(data.subarray(off, off + v.length));
          return off + v.length <= data.length;
        } catch {
          return false;
        }
      });
      if (!ok) continue;
      for (const [off, v] of entries) moved.set(`${p}:${off}`, await writer.add(v.id, data.subarray(off, off + v.length), v.plainLength));
      result.packsRepacked++;
      result.bytesRepacked += data.length;
    }
    await writer.flush();
    crashPoint('repack-packs-written');
    for (const { index } of indexes) {
      if (!index.packs.some((p) => repack.includes(p))) continue;
      const packs: string[] = [];
      const ord = new Map<string, number>();
      const ordinal = (p: string) => {
        let o = ord.get(p);
        if (o === undefined) ord.set(p, (o = packs.push(p) - 1));
        return o;
      };
      const entries = index.entries.clone();
      for (let r = 0; r < entries.length * 2; r++) {
        if (!entries.hasRef(r)) continue;
        const p = index.packs[entries.refPack(r)]!;
        const to = moved.get(`${p}:${entries.refOffset(r)}`);
        if (to) entries.relocate(r, ordinal(to.packId), to.offset, to.length);
        else entries.setRefPack(r, ordinal(p));
      }
      await opts.checkLock?.();
      await repo.replaceIndex({ header: index.header, packs, entries });
      result.indexesRewritten++;
      crashPoint('repack-index-rewritten');
    }
    indexes = await readAll(repo);
  }

  const referenced = new Set(indexes.flatMap(({ index }) => index.packs));
  for (const [id, size] of sizes) {
    if (referenced.has(id)) {
      result.packsKept++;
      continue;
    }
    result.packsRemoved++;
    result.bytesRemoved += size;
    if (!dryRun) {
      await opts.checkLock?.();
      await repo.target.delete(packKey(id));
      crashPoint('gc-deleted');
    }
  }
  if (dryRun) result.packsRepacked = repack.length;
  if (!dryRun) await opts.checkLock?.();
  result.leftoversRemoved = (await repo.target.removeLeftovers?.(dryRun)) ?? 0;
  return result;
}
