/**
 * --metrics-file: collects what a command did and writes the Prometheus file when bkp exits —
 * with the final exit code, also when the command failed or was stopped by a signal.
 */
import { onExit } from './context.js';
import { writeMetricsFile, type DeviceMetrics } from '../report/metrics.js';
import type { BackupRunResult } from '../backup/run-backup.js';

export interface MetricsRecorder {
  backup(res: BackupRunResult): void;
  pruned(removed: number): void;
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

/** Starts the clock; the file is written at exit. Without a file, records nothing. */
export function recordMetrics(file: string | undefined, base: { job?: string; command: string }): MetricsRecorder {
  const startedAt = new Date();
  let devices: DeviceMetrics[] = [];
  let backupsRemoved: number | undefined;
  if (file) {
    onExit((exitCode) => writeMetricsFile(file, { ...base, startedAt, finishedAt: new Date(), exitCode, devices, backupsRemoved }));
  }
  return {
    backup: (res) => void (devices = deviceMetrics(res)),
    pruned: (n) => void (backupsRemoved = n),
  };
}
