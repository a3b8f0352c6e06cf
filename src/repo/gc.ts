/**
 * Garbage collection: remove packs that no committed index references, and temporary files a
 * crash left behind. Runs under the repository lock, so no backup is writing meanwhile. Refuses
 * to run when an index cannot be read: its packs would look unreferenced.
 */
import type { Repository } from './repository.js';
import { packIdFromKey } from './pack.js';
import { CorruptError } from '../errors.js';
import { crashPoint } from '../faults.js';

export interface GcResult {
  packsKept: number;
  packsRemoved: number;
  bytesRemoved: number;
  leftoversRemoved: number;
  dryRun: boolean;
}

export async function collectGarbage(repo: Repository, opts: { dryRun?: boolean } = {}): Promise<GcResult> {
  const referenced = new Set<string>();
  for (const ref of await repo.listBackups()) {
    let idx;
    try {
      idx = await repo.readIndex(ref);
    } catch (e) {
      if (e instanceof CorruptError) {
        throw new CorruptError(`gc stopped: ${e.message}; run bkp verify, and remove that backup (or restore the index) before gc`);
      }
      throw e;
    }
    for (const p of idx.packs) referenced.add(p);
  }
  const result: GcResult = { packsKept: 0, packsRemoved: 0, bytesRemoved: 0, leftoversRemoved: 0, dryRun: !!opts.dryRun };
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (id && referenced.has(id)) {
      result.packsKept++;
      continue;
    }
    result.packsRemoved++;
    result.bytesRemoved += o.size;
    if (!opts.dryRun) {
      await repo.target.delete(o.key);
      crashPoint('gc-deleted');
    }
  }
  result.leftoversRemoved = (await repo.target.removeLeftovers?.(result.dryRun)) ?? 0;
  return result;
}
