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
import { liveEnvelopes, planGc, type PackObject } from './gc-plan.js';

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
  /** With dryRun only: backups to treat as gone, those the prune being previewed removes first. */
  excluding?: readonly BackupRef[];
  /** Called before each change to the repository: throw to stop (the repository lock was lost). */
  checkLock?: () => Promise<void>;
}

async function readAll(repo: Repository, excluding: ReadonlySet<string>): Promise<Array<{ ref: BackupRef; index: BackupIndex }>> {
  const out = [];
  for (const ref of await repo.listBackups()) {
    if (excluding.has(ref.key)) continue;
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
  // never in a real run: the packs of a backup that is still there must not look unreferenced
  const excluding = new Set(dryRun ? (opts.excluding ?? []).map((r) => r.key) : []);
  let indexes = await readAll(repo, excluding);

  const listed: PackObject[] = [];
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (!id) continue;
    listed.push({ id, size: o.size, archived: !!o.storageClass && ARCHIVE_CLASSES.has(o.storageClass) });
  }
  const sizes = new Map(listed.map((p) => [p.id, p.size]));

  // the same plan for the dry run and the real run (src/repo/gc-plan.ts)
  const live = liveEnvelopes(indexes.map(({ index }) => index));
  const plan = planGc(listed, live, opts.repackBelow ?? 0.5);
  const repack = plan.repack.map((p) => p.id);

  if (dryRun) {
    // what the real run will do when every pack it repacks can be read
    result.packsRepacked = plan.repack.length;
    result.bytesRepacked = plan.repack.reduce((n, p) => n + p.size, 0);
    result.packsRemoved = plan.remove.length + plan.repack.length;
    result.bytesRemoved = plan.remove.reduce((n, p) => n + p.size, 0) + result.bytesRepacked;
    result.packsKept = plan.keep.length;
    result.indexesRewritten = indexes.filter(({ index }) => index.packs.some((p) => repack.includes(p))).length;
    result.leftoversRemoved = (await repo.target.removeLeftovers?.(true, excluding)) ?? 0;
    return result;
  }

  if (repack.length > 0) {
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
    indexes = await readAll(repo, excluding);
  }

  const referenced = new Set(indexes.flatMap(({ index }) => index.packs));
  for (const [id, size] of sizes) {
    if (referenced.has(id)) {
      result.packsKept++;
      continue;
    }
    result.packsRemoved++;
    result.bytesRemoved += size;
    await opts.checkLock?.();
    await repo.target.delete(packKey(id));
    crashPoint('gc-deleted');
  }
  await opts.checkLock?.();
  result.leftoversRemoved = (await repo.target.removeLeftovers?.(false)) ?? 0;
  return result;
}
