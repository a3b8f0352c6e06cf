/**
 * Prometheus metrics of the last run, for node_exporter's textfile collector
 * (--collector.textfile.directory): rendered purely, written atomically (temporary file, fsync,
 * rename, fsync of the directory) so the collector never reads half a file. A failed run keeps
 * the previous file's last-success time: an alert on its age is the one alert that catches
 * everything — failures, hangs, a timer that stopped firing.
 */
import { promises as fs, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { DeviceMissingError, ExitCode, NotADeviceError, fromSystemError, isSystemError } from '../errors.js';

export interface DeviceMetrics {
  device: string;
  ok: boolean;
  kind?: 'full' | 'incr';
  mode?: 'full' | 'cbt' | 'digest';
  fallbackReason?: string | null;
  backupId?: string;
  bytesRead?: number;
  bytesStored?: number;
  chunksNew?: number;
  chunksReused?: number;
  chunksZero?: number;
}

/** Housekeeping commands: their series carry `bkp_command`, so their files never collide with a backup's. */
export type HousekeepingCommand = 'verify' | 'prune' | 'gc';

/** Counts a command reports besides the per-device backup metrics. */
export const COUNTS = {
  backupsRemoved: ['bkp_last_run_backups_removed', 'Backups the last run pruned.'],
  backupsChecked: ['bkp_last_run_backups_checked', 'Backup indexes the last verify checked.'],
  backupsDamaged: ['bkp_last_run_backups_damaged', 'Damaged backups the last verify found.'],
  packsRemoved: ['bkp_last_run_packs_removed', 'Packs the last prune or gc removed.'],
  bytesRemoved: ['bkp_last_run_bytes_removed', 'Bytes of packs the last prune or gc removed.'],
} as const;

export type CountName = keyof typeof COUNTS;

export interface RunMetrics {
  /** The configured job (`bkp run JOB`); absent for the other commands. */
  job?: string;
  command: string;
  startedAt: Date;
  finishedAt: Date;
  exitCode: number;
  devices: DeviceMetrics[];
  counts?: Partial<Record<CountName, number>>;
}

/** Exit codes after which the command's work is stored: 0, and 4 (a task after it failed). */
export function succeeded(exitCode: number): boolean {
  return exitCode === ExitCode.OK || exitCode === ExitCode.WARNINGS;
}

const LAST_SUCCESS = 'bkp_last_success_timestamp_seconds';

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(l: Record<string, string | undefined>): string {
  const parts = Object.entries(l)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** The last-success time (seconds) in a previous metrics file, if any. */
export function lastSuccessFrom(text: string): number | undefined {
  const m = new RegExp(`^${LAST_SUCCESS}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm').exec(text);
  const v = m ? Number(m[1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

function isHousekeeping(command: string): command is HousekeepingCommand {
  return command === 'verify' || command === 'prune' || command === 'gc';
}

export function renderMetrics(m: RunMetrics, previousLastSuccess?: number): string {
  const out: string[] = [];
  // not `job`: Prometheus sets that label to the scrape job and would rename ours to exported_job
  const job: Record<string, string | undefined> = { bkp_job: m.job, bkp_command: isHousekeeping(m.command) ? m.command : undefined };
  const gauge = (name: string, help: string, samples: Array<[Record<string, string | undefined>, number]>) => {
    if (samples.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [l, v] of samples) out.push(`${name}${labels(l)} ${Number.isInteger(v) ? v : v.toFixed(3)}`);
  };
  const secs = (d: Date) => Math.round(d.getTime() / 1000);
  // 0 until the first success: an alert on its age then fires for a job that never succeeded
  const lastSuccess = succeeded(m.exitCode) ? secs(m.finishedAt) : (previousLastSuccess ?? 0);
  gauge(LAST_SUCCESS, 'Time the last successful run ended (exit 0 or 4; kept from the previous file when a run fails; 0 before the first).', [[job, lastSuccess]]);
  gauge('bkp_last_run_timestamp_seconds', 'Time the last run ended, successful or not.', [[job, secs(m.finishedAt)]]);
  gauge('bkp_last_run_exit_code', 'Exit code of the last run (0 success, 3 partial, 4 done with warnings; docs/cli.md).', [[job, m.exitCode]]);
  gauge('bkp_last_run_duration_seconds', 'Duration of the last run.', [[job, (m.finishedAt.getTime() - m.startedAt.getTime()) / 1000]]);
  const per = (f: (d: DeviceMetrics) => number | undefined) =>
    m.devices.filter((d) => d.ok && f(d) !== undefined).map((d) => [{ ...job, device: d.device }, f(d)!] as [Record<string, string | undefined>, number]);
  gauge('bkp_last_run_device_ok', 'Whether the last run committed a backup of the device (1) or not (0).', m.devices.map((d) => [{ ...job, device: d.device }, d.ok ? 1 : 0]));
  gauge('bkp_last_run_bytes_read', 'Bytes read from the device by the last run.', per((d) => d.bytesRead));
  gauge('bkp_last_run_bytes_stored', 'Bytes (compressed) the last run added to the repository for the device.', per((d) => d.bytesStored));
  gauge('bkp_last_run_chunks_new', 'Chunks the last run stored.', per((d) => d.chunksNew));
  gauge('bkp_last_run_chunks_reused', 'Chunks the repository already held (dedup).', per((d) => d.chunksReused));
  gauge('bkp_last_run_chunks_zero', 'All-zero chunks (not stored).', per((d) => d.chunksZero));
  // the backup id is not a label: it would make a new series every run (it is in --json and bkp list)
  gauge(
    'bkp_last_run_info',
    'How the last run backed the device up: kind, mode (full, cbt, digest) and the reason of a digest fallback.',
    m.devices.filter((d) => d.ok).map((d) => [{ ...job, device: d.device, kind: d.kind, mode: d.mode, fallback_reason: d.fallbackReason ?? '' }, 1]),
  );
  for (const [key, [name, help]] of Object.entries(COUNTS) as Array<[CountName, (typeof COUNTS)[CountName]]>) {
    const v = m.counts?.[key];
    if (v !== undefined) gauge(name, help, [[job, v]]);
  }
  return out.join('\n') + '\n';
}

/**
 * Checks, before a command does its work, that its metrics file can be written: the directory
 * exists and is writable, the file is not a directory. A run must not store a backup and then fail
 * over its metrics.
 */
export async function checkMetricsFile(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const st = await fs.stat(dir).catch((e: unknown) => {
    if (isSystemError(e, 'ENOENT')) throw new DeviceMissingError(`the directory of metrics file ${file} does not exist`, { cause: e });
    throw fromSystemError(e, 'metrics file', file);
  });
  if (!st.isDirectory()) throw new NotADeviceError(`metrics file ${file}: ${dir} is not a directory`);
  await fs.access(dir, fsc.W_OK).catch((e: unknown) => {
    throw fromSystemError(e, 'directory of metrics file', file);
  });
  const f = await fs.stat(file).catch(() => undefined);
  if (f?.isDirectory()) throw new NotADeviceError(`metrics file ${file} is a directory`);
}

/** Writes the metrics file atomically, keeping the last-success time of the previous one. */
export async function writeMetricsFile(file: string, m: RunMetrics): Promise<void> {
  const previous = await fs.readFile(file, 'utf8').catch(() => '');
  const text = renderMetrics(m, lastSuccessFrom(previous));
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}`);
  try {
    const fh = await fs.open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
    const d = await fs.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    if (isSystemError(e, 'ENOENT')) throw new DeviceMissingError(`the directory of metrics file ${file} does not exist`, { cause: e });
    throw fromSystemError(e, 'metrics file', file);
  }
}
