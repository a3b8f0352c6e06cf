/** `bkp run JOB` and `bkp config check` (the group is in commands.ts): the configuration file's jobs. */
import type { Argv, CommandModule } from 'yargs';
import { context, registerCleanup, type GlobalArgs } from './context.js';
import { parseSize } from '../shared/sizes.js';
import { backupLines, pruneLines } from './render.js';
import { recordMetrics } from './metrics-hook.js';
import { openTarget } from '../storage/open.js';
import { runJob } from '../backup/run-job.js';
import { loadConfig, jobOf } from '../config/load.js';
import { DEFAULT_DIFF_STORAGE, DEFAULT_DIFF_STORAGE_LIMIT } from '../config/config.js';
import { s3ArgsFor } from './s3-flags.js';
import { s3Options, s3OptionsFrom, type S3Args } from './s3-options.js';
import { fmtAge } from '../shared/durations.js';
import { UsageError } from '../errors.js';

type RunArgs = GlobalArgs &
  S3Args & {
    config?: string;
    job: string;
    snapshot?: boolean;
    fallback?: boolean;
    'compression-level'?: number;
    'blksnap-device'?: string;
    'diff-storage'?: string;
    'diff-storage-limit'?: string;
    'metrics-file'?: string;
    full?: boolean;
    incr?: boolean;
    prune: boolean;
  };

export const run: CommandModule<GlobalArgs, RunArgs> = {
  command: 'run <job>',
  describe: 'run a job of the configuration file: full or incremental by its schedule, then prune by its retention',
  builder: (y: Argv) =>
    s3Options(y)
      .positional('job', { type: 'string', describe: 'job name (a key of "jobs" in the configuration file)' })
      .option('repo', { type: 'string', describe: "repository (default: the job's repo, else $BKP_REPO)" })
      .option('snapshot', { type: 'boolean', describe: "override the job's snapshot setting; --no-snapshot reads the devices directly" })
      .option('fallback', { type: 'boolean', describe: "override the job's fallback setting; --no-fallback fails an incremental whose chain broke (exit 23)" })
      .option('compression-level', { type: 'number', describe: "zstd level (default: the job's, else the repository's)" })
      .option('blksnap-device', { type: 'string', describe: 'blksnap control device' })
      .option('diff-storage', { type: 'string', describe: `difference storage directory (default: the job's, else ${DEFAULT_DIFF_STORAGE})` })
      .option('diff-storage-limit', { type: 'string', describe: "most difference storage the snapshot may use (default: the job's, else 16G)" })
      .option('metrics-file', { type: 'string', describe: "write Prometheus metrics to this file (default: the job's metricsFile)" })
      .option('full', { type: 'boolean', describe: 'a full backup, whatever the schedule says' })
      .option('incr', { type: 'boolean', describe: 'an incremental backup, whatever the schedule says' })
      .option('prune', { type: 'boolean', default: true, describe: "prune by the job's retention after the backup (--no-prune: do not)" })
      .conflicts('full', 'incr') as never,
  handler: async (a) => {
    const ctx = context(a);
    const config = await loadConfig(a.config);
    const job = jobOf(config, a.job);
    const metrics = await recordMetrics(a['metrics-file'] ?? job.metricsFile, { job: job.name, command: 'run' });
    const repo = a.repo ?? job.repo ?? process.env.BKP_REPO;
    if (!repo) throw new UsageError(`job ${job.name} names no repository: set jobs.${job.name}.repo in ${config.file}, or pass --repo or BKP_REPO`);
    const target = await openTarget(repo, s3OptionsFrom(s3ArgsFor(job, a)));
    const r = await runJob({
      name: job.name,
      target,
      devices: job.devices,
      snapshot: a.snapshot ?? job.snapshot ?? true,
      fallback: a.fallback ?? job.fallback ?? true,
      compressionLevel: a['compression-level'] ?? job.compressionLevel,
      blksnapDevice: a['blksnap-device'] ?? job.blksnapDevice,
      diffStorageDir: a['diff-storage'] ?? job.diffStorage ?? DEFAULT_DIFF_STORAGE,
      diffStorageLimit: a['diff-storage-limit'] !== undefined ? parseSize(a['diff-storage-limit'], '--diff-storage-limit') : (job.diffStorageLimit ?? DEFAULT_DIFF_STORAGE_LIMIT),
      fullEvery: job.schedule.fullEvery,
      force: a.full ? 'full' : a.incr ? 'incr' : undefined,
      retention: a.prune ? job.retention : undefined,
      signal: ctx.signal,
      reporter: ctx.reporter,
      onCleanup: registerCleanup,
      onBackup: (res) => metrics.backup(res),
    });
    if (r.prune?.ok && !r.prune.dryRun) {
      metrics.count('backupsRemoved', r.prune.remove.length);
      metrics.count('packsRemoved', r.prune.gc.packsRemoved);
      metrics.count('bytesRemoved', r.prune.gc.bytesRemoved);
    }
    const lines = [`job ${r.job}: ${r.decision.kind} (${r.decision.reason})`, ...backupLines(r.backup)];
    if (r.prune?.ok) lines.push(...pruneLines(r.prune).filter((l) => !l.startsWith('keep ')));
    else if (r.prune) lines.push(`prune FAILED: ${r.prune.error}`);
    ctx.out(lines.join('\n'), { command: 'run', job: r.job, decision: r.decision, backup: { command: r.backup.kind, ...r.backup }, prune: r.prune, exitCode: r.exitCode });
    if (r.exitCode !== 0) process.exitCode = r.exitCode;
  },
};

export const configCheck: CommandModule<GlobalArgs, GlobalArgs & { config?: string }> = {
  command: 'check',
  describe: 'check the configuration file and show its jobs',
  handler: async (a) => {
    const ctx = context(a);
    const config = await loadConfig(a.config);
    const jobs = [...config.jobs.values()];
    const lines = [`${config.file}: ${jobs.length} job(s), valid`];
    for (const j of jobs) {
      const keep = j.retention ? Object.entries(j.retention).filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${v}`).join(', ') : 'no prune';
      lines.push(
        `  ${j.name}: ${j.devices.join(' ')} → ${j.repo ?? '(--repo or BKP_REPO)'}; ${j.schedule.fullEvery ? `full every ${fmtAge(j.schedule.fullEvery)}` : 'full only when missing'}; ${keep}${j.snapshot === false ? '; no snapshot' : ''}`,
      );
    }
    ctx.out(lines.join('\n'), {
      command: 'config check',
      file: config.file,
      jobs: jobs.map((j) => ({ ...j, schedule: { fullEverySeconds: j.schedule.fullEvery === undefined ? null : j.schedule.fullEvery / 1000 } })),
    });
  },
};
