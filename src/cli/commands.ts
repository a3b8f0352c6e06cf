/** The commands: parse, call the library, render. No logic beyond that. */
import type { Argv, CommandModule } from 'yargs';
import { promises as fs } from 'node:fs';
import { context, registerCleanup, setStopNote, type GlobalArgs } from './context.js';
import { parseSize } from '../shared/sizes.js';
import { status, snapshotCleanup } from './snapshot-commands.js';
import { openTarget } from '../storage/open.js';
import { s3Options, s3OptionsFrom } from './s3-options.js';
import { Repository, deviceKeyOf } from '../repo/repository.js';
import { runBackup } from '../backup/run-backup.js';
import { restoreStopNote, runRestore } from '../restore/restore.js';
import { runVerify } from '../restore/verify.js';
import { collectGarbage } from '../repo/gc.js';
import { acquireLock } from '../repo/lock.js';
import { fmtBytes, fmtDuration } from '../report/reporter.js';
import { BackupNotFoundError, CorruptError, ExitCode, UsageError } from '../errors.js';
import { hasRule, type RetentionPolicy } from '../repo/retention.js';
import { pruneBackups } from '../repo/prune.js';
import { backupLines, pruneLines, verifyLines, verifyOk } from './render.js';
import { recordMetrics } from './metrics-hook.js';
import { run, configCheck } from './run-command.js';
import { repair } from './repair-command.js';

type Args<T> = T & GlobalArgs;

const repoOption = (y: Argv) =>
  s3Options(
    y.option('repo', {
      type: 'string',
      describe: 'repository: a local directory or s3://BUCKET/PREFIX (or set BKP_REPO)',
      default: process.env.BKP_REPO,
      defaultDescription: '$BKP_REPO',
    }),
  );

export const init: CommandModule<GlobalArgs, Args<{ 'chunk-size'?: string; 'pack-size'?: string; 'compression-level'?: number }>> = {
  command: 'init',
  describe: 'create a new repository',
  builder: (y) =>
    repoOption(y)
      .option('chunk-size', { type: 'string', describe: 'chunk size, a power of two from 64K to 64M (default 1M)' })
      .option('pack-size', { type: 'string', describe: 'target size of pack objects (default 32M)' })
      .option('compression-level', { type: 'number', describe: 'zstd level, 1 to 19 (default 3)' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const target = await openTarget(a.repo, s3OptionsFrom(a));
    const repo = await Repository.init(target, {
      chunkSize: a['chunk-size'] !== undefined ? parseSize(a['chunk-size'], '--chunk-size') : undefined,
      packSize: a['pack-size'] !== undefined ? parseSize(a['pack-size'], '--pack-size') : undefined,
      compressionLevel: a['compression-level'],
    });
    ctx.out(`created repository ${target.location} (chunk size ${fmtBytes(repo.config.chunkSize)}, zstd level ${repo.config.compression.level})`, {
      command: 'init',
      repository: target.location,
      config: repo.config,
    });
  },
};

type BackupArgs = Args<{
  device: string[];
  snapshot: boolean;
  fallback: boolean;
  'compression-level'?: number;
  'blksnap-device'?: string;
  'diff-storage': string;
  'diff-storage-limit': string;
  'metrics-file'?: string;
}>;

const metricsOption = (y: Argv) =>
  y.option('metrics-file', { type: 'string', describe: 'write Prometheus metrics of this run to this file (textfile collector), atomically' });

const backupOptions = (y: Argv) =>
  metricsOption(repoOption(y))
    .option('device', { type: 'string', array: true, demandOption: true, describe: 'block device or image file to back up (repeat for several)' })
    .option('snapshot', { type: 'boolean', default: true, describe: 'read through one blksnap snapshot of all devices; --no-snapshot reads them directly' })
    .option('compression-level', { type: 'number', describe: "zstd level for this run (default: the repository's)" })
    .option('blksnap-device', { type: 'string', describe: 'blksnap control device (default /dev/blksnap, else /dev/veeamblksnap)' })
    .option('diff-storage', { type: 'string', default: '/var/lib/bkp/diff-storage', describe: "directory for the snapshot's difference storage (best on a device not backed up)" })
    .option('diff-storage-limit', { type: 'string', default: '16G', describe: 'most difference storage the snapshot may use' });

async function backupHandler(kind: 'full' | 'incr', a: BackupArgs): Promise<void> {
  const ctx = context(a);
  const metrics = await recordMetrics(a['metrics-file'], { command: kind });
  const target = await openTarget(a.repo, s3OptionsFrom(a));
  const res = await runBackup({
    target,
    devices: a.device,
    kind,
    snapshot: a.snapshot,
    noFallback: kind === 'incr' && a.fallback === false,
    compressionLevel: a['compression-level'],
    blksnapDevice: a['blksnap-device'],
    diffStorageDir: a['diff-storage'],
    diffStorageLimit: parseSize(a['diff-storage-limit'], '--diff-storage-limit'),
    signal: ctx.signal,
    reporter: ctx.reporter,
    onCleanup: registerCleanup,
  });
  metrics.backup(res);
  const lines = backupLines(res);
  ctx.out(lines.join('\n'), { command: kind, ...res });
  const failed = res.devices.filter((d) => !d.ok);
  if (failed.length === res.devices.length) process.exitCode = failed[0]!.exitCode ?? ExitCode.FAILURE;
  else if (failed.length) process.exitCode = ExitCode.PARTIAL;
}

export const full: CommandModule<GlobalArgs, BackupArgs> = {
  command: 'full',
  describe: 'back up whole devices (reads every chunk)',
  builder: (y) => backupOptions(y) as never,
  handler: (a) => backupHandler('full', a),
};

export const incr: CommandModule<GlobalArgs, BackupArgs> = {
  command: 'incr',
  describe: 'back up what changed since the previous backup (CBT map; digest comparison when the chain is broken)',
  builder: (y) =>
    backupOptions(y).option('fallback', {
      type: 'boolean',
      default: true,
      describe: 'when the chain is not valid, read everything and compare digests; --no-fallback fails instead (exit 23)',
    }) as never,
  handler: (a) => backupHandler('incr', a),
};

export const list: CommandModule<GlobalArgs, Args<{ device?: string }>> = {
  command: 'list',
  aliases: ['ls'],
  describe: 'list the backups in a repository',
  builder: (y) => repoOption(y).option('device', { type: 'string', describe: 'only backups of this device' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const repo = await Repository.open(await openTarget(a.repo, s3OptionsFrom(a)));
    const rows = [];
    for (const ref of await repo.listBackups()) {
      if (a.device !== undefined && ref.deviceKey !== a.device && ref.deviceKey !== deviceKeyOf(a.device)) continue;
      try {
        const h = await repo.readIndexHeader(ref);
        rows.push({
          backupId: ref.backupId,
          device: h.device.path,
          deviceKey: ref.deviceKey,
          time: h.time,
          kind: h.kind,
          size: h.device.size,
          stored: h.stats.bytesStored,
          snapshot: h.snapshot,
          parent: h.parent,
          fsType: h.device.fsType,
          fsUuid: h.device.fsUuid,
        });
      } catch (e) {
        if (e instanceof BackupNotFoundError) continue; // removed since the listing (a prune)
        if (!(e instanceof CorruptError)) throw e;
        rows.push({ backupId: ref.backupId, deviceKey: ref.deviceKey, damaged: e.message });
      }
    }
    const text = rows.length
      ? [
          ['ID', 'TIME', 'KIND', 'DEVICE', 'SIZE', 'STORED'].join('\t'),
          ...rows.map((r) =>
            'damaged' in r
              ? `${r.backupId}\t-\t-\t${r.deviceKey}\tDAMAGED: ${r.damaged}`
              : [r.backupId, r.time, r.kind + (r.snapshot ? '' : ' (no snapshot)'), r.device, fmtBytes(r.size), fmtBytes(r.stored)].join('\t'),
          ),
        ].join('\n')
      : 'no backups';
    ctx.out(text, { command: 'list', backups: rows });
  },
};

export const restore: CommandModule<GlobalArgs, Args<{ backup: string; device?: string; to: string; force: boolean; 'ignore-errors': boolean }>> = {
  command: 'restore',
  describe: 'restore a backup to a block device or an image file',
  builder: (y) =>
    repoOption(y)
      .option('backup', { type: 'string', default: 'latest', describe: 'backup id (or a unique prefix), or latest' })
      .option('device', { type: 'string', describe: 'which device of the backup (its path or key)' })
      .option('to', { type: 'string', demandOption: true, describe: 'block device or image file to write' })
      .option('force', { type: 'boolean', default: false, describe: 'overwrite a target that holds data or a filesystem' })
      .option('ignore-errors', { type: 'boolean', default: false, describe: 'write zeros where a chunk is damaged or missing, go on, and list those ranges (exit 3)' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const repo = await Repository.open(await openTarget(a.repo, s3OptionsFrom(a)));
    const ref = await repo.resolve(a.backup, a.device);
    const toDevice = (await fs.stat(a.to).catch(() => null))?.isBlockDevice() ?? false;
    setStopNote(restoreStopNote(a.to, toDevice ? 'block' : 'file'));
    const r = await runRestore({
      repo,
      ref,
      to: a.to,
      force: a.force,
      ignoreErrors: a['ignore-errors'],
      reporter: ctx.reporter,
      signal: ctx.signal,
      readAhead: a['s3-concurrency'],
      onCleanup: registerCleanup,
    });
    const rate = r.bytes / Math.max(0.001, r.durationMs / 1000);
    const lost = r.damaged.reduce((n, d) => n + d.length, 0);
    ctx.out(
      `restored ${r.header.device.path} from backup ${r.header.backupId} to ${r.to}: ${fmtBytes(r.bytes)} (${fmtBytes(r.zeroBytes)} zeros) in ${fmtDuration(r.durationMs)}, ${fmtBytes(rate)}/s; ` +
        (r.damaged.length ? `every chunk verified except ${r.damaged.length} damaged range(s) (${fmtBytes(lost)}), written as zeros` : 'every chunk verified'),
      { command: 'restore', backupId: r.header.backupId, device: r.header.device, to: r.to, bytes: r.bytes, zeroBytes: r.zeroBytes, bytesFetched: r.bytesFetched, durationMs: r.durationMs, damaged: r.damaged },
    );
    if (r.damaged.length) {
      // never silently: every range on stderr (also with --quiet), and the partial exit code
      for (const d of r.damaged) ctx.reporter.error(`DAMAGED device bytes ${d.offset}-${d.offset + d.length - 1} written as zeros: ${d.problem}`);
      process.exitCode = ExitCode.PARTIAL;
    }
  },
};

export const verify: CommandModule<GlobalArgs, Args<{ backup?: string; 'read-data': boolean; 'metrics-file'?: string }>> = {
  command: 'verify',
  aliases: ['check'],
  describe: 'check that backups can be restored',
  builder: (y) =>
    metricsOption(repoOption(y))
      .option('backup', { type: 'string', describe: 'only this backup (id or unique prefix)' })
      .option('read-data', { type: 'boolean', default: false, describe: 'read, decompress and hash every chunk' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const metrics = await recordMetrics(a['metrics-file'], { command: 'verify' });
    const repo = await Repository.open(await openTarget(a.repo, s3OptionsFrom(a)));
    const r = await runVerify({ repo, backup: a.backup, readData: a['read-data'], reporter: ctx.reporter });
    const ok = verifyOk(r);
    metrics.count('backupsChecked', r.backups.length);
    metrics.count('backupsDamaged', r.backups.filter((b) => !b.ok).length);
    ctx.out(verifyLines(r, a['read-data']).join('\n'), { command: 'verify', ok, ...r });
    if (!ok) process.exitCode = ExitCode.CORRUPT;
  },
};

export const gc: CommandModule<GlobalArgs, Args<{ 'dry-run': boolean; 'metrics-file'?: string }>> = {
  command: 'gc',
  describe: 'remove packs no backup references (left by failed or pruned backups)',
  builder: (y) => metricsOption(repoOption(y)).option('dry-run', { type: 'boolean', default: false, describe: 'only say what would be removed' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const metrics = await recordMetrics(a['metrics-file'], { command: 'gc' });
    const target = await openTarget(a.repo, s3OptionsFrom(a));
    const repo = await Repository.open(target);
    const lock = await acquireLock(target, 'bkp gc', (m) => ctx.reporter.warn(m), undefined, { housekeeping: true });
    try {
      const r = await collectGarbage(repo, { dryRun: a['dry-run'], checkLock: () => lock.assertHeld() });
      if (!r.dryRun) {
        metrics.count('packsRemoved', r.packsRemoved);
        metrics.count('bytesRemoved', r.bytesRemoved);
      }
      ctx.out(
        `${r.dryRun ? 'would remove' : 'removed'} ${r.packsRemoved} pack(s) (${fmtBytes(r.bytesRemoved)}) and ${r.leftoversRemoved} temporary file(s); ${r.dryRun ? 'would repack' : 'repacked'} ${r.packsRepacked} pack(s) into new ones; ${r.packsKept} pack(s) in use`,
        { command: 'gc', ...r },
      );
    } finally {
      await lock.release();
    }
  },
};

type PruneArgs = Args<{
  device?: string;
  'keep-last'?: number;
  'keep-hourly'?: number;
  'keep-daily'?: number;
  'keep-weekly'?: number;
  'keep-monthly'?: number;
  'dry-run': boolean;
  'metrics-file'?: string;
}>;

export const prune: CommandModule<GlobalArgs, PruneArgs> = {
  command: 'prune',
  describe: 'remove backups a retention policy does not keep, then collect garbage',
  builder: (y) =>
    metricsOption(repoOption(y))
      .option('device', { type: 'string', describe: 'only backups of this device (default: every device, each on its own)' })
      .option('keep-last', { type: 'number', describe: 'keep the N newest backups' })
      .option('keep-hourly', { type: 'number', describe: 'keep the newest backup of each of the last N hours that have one' })
      .option('keep-daily', { type: 'number', describe: 'keep the newest backup of each of the last N days that have one' })
      .option('keep-weekly', { type: 'number', describe: 'keep the newest backup of each of the last N ISO weeks that have one' })
      .option('keep-monthly', { type: 'number', describe: 'keep the newest backup of each of the last N months that have one' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'only say what would be removed' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const policy: RetentionPolicy = { last: a['keep-last'], hourly: a['keep-hourly'], daily: a['keep-daily'], weekly: a['keep-weekly'], monthly: a['keep-monthly'] };
    for (const [k, v] of Object.entries(policy)) {
      if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new UsageError(`--keep-${k} must be a whole number of 0 or more (got ${v})`);
    }
    if (!hasRule(policy)) throw new UsageError('name what to keep: --keep-last, --keep-hourly, --keep-daily, --keep-weekly or --keep-monthly');
    const metrics = await recordMetrics(a['metrics-file'], { command: 'prune' });
    const target = await openTarget(a.repo, s3OptionsFrom(a));
    const repo = await Repository.open(target);
    const device = a.device;
    const r = await pruneBackups(repo, {
      policy,
      deviceFilter: device === undefined ? undefined : (k) => k === device || k === deviceKeyOf(device),
      dryRun: a['dry-run'],
      command: 'bkp prune',
      warn: (m) => ctx.reporter.warn(m),
    });
    if (!r.dryRun) {
      metrics.count('backupsRemoved', r.remove.length);
      metrics.count('packsRemoved', r.gc.packsRemoved);
      metrics.count('bytesRemoved', r.gc.bytesRemoved);
    }
    ctx.out(pruneLines(r).join('\n'), { command: 'prune', ...r });
  },
};

/**
 * A command that only groups subcommands (`bkp snapshot cleanup`): it runs none of them by
 * default, and an unknown or missing subcommand is a usage error (src/cli/usage-check.ts says which).
 */
function group(name: string, describe: string, subcommands: CommandModule<GlobalArgs, never>[]): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: name,
    describe,
    builder: (y) => y.command(subcommands as never).demandCommand(1, `bkp ${name} needs a subcommand: ${subcommands.map((c) => c.command).join(', ')}`) as never,
    handler: () => {
      throw new UsageError(`bkp ${name} needs a subcommand: ${subcommands.map((c) => c.command).join(', ')}`);
    },
  };
}

export const snapshot = group('snapshot', 'snapshots bkp left behind: bkp snapshot cleanup', [snapshotCleanup as never]);
export const config = group('config', 'the configuration file: bkp config check', [configCheck as never]);

export const all = [init, full, incr, run, list, restore, verify, repair, prune, gc, status, snapshot, config];
