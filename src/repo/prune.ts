/**
 * `bkp prune` (and the prune step of `bkp run`): under the repository lock, remove the backups a
 * retention policy does not keep (src/repo/retention.ts decides), then collect garbage.
 */
import { Repository, type BackupRef } from './repository.js';
import { acquireLock } from './lock.js';
import { collectGarbage, type GcResult } from './gc.js';
import { planRetention, type RetentionPolicy } from './retention.js';
import { crashPoint } from '../faults.js';

export interface PruneResult {
  dryRun: boolean;
  keep: Array<{ backupId: string; deviceKey: string; reasons: string[] }>;
  remove: Array<{ backupId: string; deviceKey: string }>;
  gc: GcResult;
}

export interface PruneOptions {
  policy: RetentionPolicy;
  /** Only backups of the devices this accepts (default: every device). */
  deviceFilter?: (deviceKey: string) => boolean;
  dryRun?: boolean;
  command: string;
  warn: (msg: string) => void;
}

export async function pruneBackups(repo: Repository, opts: PruneOptions): Promise<PruneResult> {
  const dryRun = !!opts.dryRun;
  const lock = await acquireLock(repo.target, opts.command, opts.warn, undefined, { housekeeping: true });
  try {
    let refs: BackupRef[] = await repo.listBackups();
    if (opts.deviceFilter) refs = refs.filter((r) => opts.deviceFilter!(r.deviceKey));
    const items = await Promise.all(refs.map(async (ref) => ({ ...ref, time: new Date((await repo.readIndexHeader(ref)).time) })));
    const plan = planRetention(items, opts.policy);
    if (!dryRun) {
      for (const r of plan.remove) {
        await lock.assertHeld();
        await repo.removeBackup(r);
        crashPoint('prune-removed');
      }
    }
    // the dry run's gc counts without the backups the real run removes first: the same numbers
    const gc = await collectGarbage(repo, { dryRun, excluding: dryRun ? plan.remove : [], checkLock: () => lock.assertHeld() });
    return {
      dryRun,
      keep: plan.keep.map((k) => ({ backupId: k.item.backupId, deviceKey: k.item.deviceKey, reasons: k.reasons })),
      remove: plan.remove.map((r) => ({ backupId: r.backupId, deviceKey: r.deviceKey })),
      gc,
    };
  } finally {
    await lock.release();
  }
}
