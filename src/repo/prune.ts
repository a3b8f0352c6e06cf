/**
 * `bkp prune` (and the prune step of `bkp run`): under the repository lock, remove the backups a
 * retention policy does not keep (src/repo/retention.ts decides), then collect garbage.
 */
import { Repository, type BackupRef } from './repository.js';
import { acquireLock } from './lock.js';
import { collectGarbage, type GcResult } from './gc.js';
import { planRetention, type RetentionPolicy } from './retention.js';
import { crashPoint } from '../faults.js';
import { CorruptError } from '../errors.js';

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
    // a backup whose header cannot be read has no known time: the policy cannot judge it, so it
    // is kept (and named) while the others are pruned as usual
    const damaged: Array<{ backupId: string; deviceKey: string; problem: string }> = [];
    const items: Array<BackupRef & { time: Date }> = [];
    for (const ref of refs) {
      try {
        items.push({ ...ref, time: new Date((await repo.readIndexHeader(ref)).time) });
      } catch (e) {
        if (!(e instanceof CorruptError)) throw e;
        damaged.push({ backupId: ref.backupId, deviceKey: ref.deviceKey, problem: e.message });
        opts.warn(`kept ${ref.backupId} ${ref.deviceKey}: ${e.message}`);
      }
    }
    const plan = planRetention(items, opts.policy);
    if (!dryRun) {
      for (const r of plan.remove) {
        await lock.assertHeld();
        await repo.removeBackup(r);
        crashPoint('prune-removed');
      }
    }
    // the dry run's gc counts without the backups the real run removes first: the same numbers
    let gc: GcResult;
    try {
      gc = await collectGarbage(repo, { dryRun, excluding: dryRun ? plan.remove : [], checkLock: () => lock.assertHeld() });
    } catch (e) {
      // gc keeps every pack while an index is damaged: say what prune did before it stopped
      if (e instanceof CorruptError) throw new CorruptError(`prune ${dryRun ? 'would remove' : 'removed'} ${plan.remove.length} backup(s), but ${e.message}`);
      throw e;
    }
    return {
      dryRun,
      keep: [
        ...plan.keep.map((k) => ({ backupId: k.item.backupId, deviceKey: k.item.deviceKey, reasons: k.reasons })),
        ...damaged.map((d) => ({ backupId: d.backupId, deviceKey: d.deviceKey, reasons: ['damaged index'] })),
      ],
      remove: plan.remove.map((r) => ({ backupId: r.backupId, deviceKey: r.deviceKey })),
      gc,
    };
  } finally {
    await lock.release();
  }
}
