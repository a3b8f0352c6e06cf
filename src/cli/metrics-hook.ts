/**
 * --metrics-file: collects what a command did and writes the Prometheus file when bkp exits —
 * with the final exit code, also when the command failed or was stopped by a signal. The file's
 * directory is checked first, so that a backup is never stored and then reported as failed.
 */
import { onExit } from './context.js';
import { checkMetricsFile, writeMetricsFile, type CountName, type DeviceMetrics, type RunMetrics } from '../report/metrics.js';
import type { BackupRunResult } from '../backup/run-backup.js';

export interface MetricsRecorder {
  backup(res: BackupRunResult): void;
  count(name: CountName, value: number): void;
}

export function deviceMetrics(res: BackupRunResult): DeviceMetrics[] {
  return res.devices.map((d) => ({
    device: d.device,
    ok: d.ok,
    kind: res.kind,
    mode: d.method?.mode,
    fallbackReason: d.method?.mode === 'digest' ? d.method.reason : null,
    backupId: d.backupId,
    bytesRead: d.stats?.bytesRead,
    bytesStored: d.stats?.bytesStored,
    chunksNew: d.stats?.chunksNew,
    chunksReused: d.stats?.chunksReused,
    chunksZero: d.stats?.chunksZero,
  }));
}

/**
 * Checks that the file can be written (before the command does anything), starts the clock; the
 * file is written at exit. Without a file, records nothing.
 */
export async function recordMetrics(file: string | undefined, base: { job?: string; command: string }): Promise<MetricsRecorder> {
  const startedAt = new Date();
  let devices: DeviceMetrics[] = [];
  const counts: RunMetrics['counts'] = {};
  if (file) {
    await checkMetricsFile(file);
    onExit((exitCode) => writeMetricsFile(file, { ...base, startedAt, finishedAt: new Date(), exitCode, devices, counts }));
  }
  return {
    backup: (res) => void (devices = deviceMetrics(res)),
    count: (name, value) => void (counts[name] = value),
  };
}
