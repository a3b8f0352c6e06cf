/**
 * `bkp run JOB`: a configured job, start to end — decide full or incremental from the job's
 * schedule and the backups already in the repository (src/backup/schedule.ts), back the job's
 * devices up in one run, then prune those devices when the job has a retention policy.
 */
import { Repository, deviceKeyOf } from '../repo/repository.js';
import { pruneBackups, type PruneResult } from '../repo/prune.js';
import { runBackup, type BackupRunResult } from './run-backup.js';
import { decideKind, type ScheduleDecision, type ScheduledDevice } from './schedule.js';
import type { RetentionPolicy } from '../repo/retention.js';
import type { Target } from '../storage/target.js';
import type { Reporter } from '../report/reporter.js';
import { BkpError, CorruptError, ExitCode } from '../errors.js';

export interface JobRunOptions {
  name: string;
  target: Target;
  devices: string[];
  snapshot: boolean;
  fallback: boolean;
  diffStorageDir: string;
  diffStorageLimit: number;
  blksnapDevice?: string;
  compressionLevel?: number;
  /** Milliseconds (schedule.fullEvery). */
  fullEvery?: number;
  /** --full or --incr: skip the schedule. */
  force?: 'full' | 'incr';
  /** Prune after the backup with this policy (undefined: no prune). */
  retention?: RetentionPolicy;
  now?: Date;
  signal?: AbortSignal;
  reporter: Reporter;
  onCleanup?: (fn: () => Promise<void>) => void;
  /** Called as soon as the backup is done (before prune), e.g. for metrics. */
  onBackup?: (res: BackupRunResult) => void;
}

export type JobPruneOutcome = ({ ok: true } & PruneResult) | { ok: false; error: string; exitCode: number };

export interface JobRunResult {
  job: string;
  decision: ScheduleDecision;
  backup: BackupRunResult;
  prune: JobPruneOutcome | null;
  exitCode: number;
}

/** The backups of the job's devices, for the schedule (a damaged index counts as no backup). */
async function scheduledDevices(repo: Repository, devices: string[]): Promise<ScheduledDevice[]> {
  const refs = await repo.listBackups();
  return Promise.all(
    devices.map(async (device) => {
      const key = deviceKeyOf(device);
      const backups: ScheduledDevice['backups'][number][] = [];
      for (const ref of refs.filter((r) => r.deviceKey === key)) {
        try {
          const h = await repo.readIndexHeader(ref);
          backups.push({ time: new Date(h.time), kind: h.kind, lastFullTime: h.lastFullTime ? new Date(h.lastFullTime) : null });
        } catch (e) {
          if (!(e instanceof CorruptError)) throw e;
        }
      }
      return { device, backups };
    }),
  );
}

export function backupExitCode(res: BackupRunResult): number {
  const failed = res.devices.filter((d) => !d.ok);
  if (failed.length === 0) return ExitCode.OK;
  return failed.length === res.devices.length ? (failed[0]!.exitCode ?? ExitCode.FAILURE) : ExitCode.PARTIAL;
}

export async function runJob(opts: JobRunOptions): Promise<JobRunResult> {
  const { reporter } = opts;
  const repo = await Repository.open(opts.target);
  const decision: ScheduleDecision = opts.force
    ? { kind: opts.force, reason: `--${opts.force} given` }
    : decideKind(await scheduledDevices(repo, opts.devices), opts.fullEvery, opts.now ?? new Date());
  reporter.info(`job ${opts.name}: ${decision.kind} backup (${decision.reason})`);
  const backup = await runBackup({
    target: opts.target,
    devices: opts.devices,
    kind: decision.kind,
    snapshot: opts.snapshot,
    noFallback: decision.kind === 'incr' && !opts.fallback,
    compressionLevel: opts.compressionLevel,
    blksnapDevice: opts.blksnapDevice,
    diffStorageDir: opts.diffStorageDir,
    diffStorageLimit: opts.diffStorageLimit,
    signal: opts.signal,
    reporter,
    onCleanup: opts.onCleanup,
  });
  opts.onBackup?.(backup);
  let exitCode = backupExitCode(backup);
  let prune: JobPruneOutcome | null = null;
  // prune only the devices backed up now: a device that failed is left as it was
  const pruned = new Set(backup.devices.filter((d) => d.ok).map((d) => d.deviceKey));
  if (opts.retention && pruned.size > 0 && !opts.signal?.aborted) {
    try {
      const r = await pruneBackups(repo, {
        policy: opts.retention,
        deviceFilter: (k) => pruned.has(k),
        command: `bkp run ${opts.name} (prune)`,
        warn: (m) => reporter.warn(m),
      });
      prune = { ok: true, ...r };
    } catch (e) {
      if (!(e instanceof BkpError)) throw e;
      reporter.error(`prune: ${e.message}`);
      prune = { ok: false, error: e.message, exitCode: e.exitCode };
      // the backup is committed: a prune that failed after it is a warning (4), not a code that
      // reads as "nothing stored"; the prune's own code is in the result
      if (exitCode === ExitCode.OK) exitCode = ExitCode.WARNINGS;
    }
  }
  return { job: opts.name, decision, backup, prune, exitCode };
}
