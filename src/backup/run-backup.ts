/**
 * `bkp full` (and the frame of `bkp incr`): lock the repository, open each device, back it up,
 * commit its index, release everything — whatever happens.
 */
import * as path from 'node:path';
import { Repository, deviceKeyOf, newBackupId } from '../repo/repository.js';
import { acquireLock } from '../repo/lock.js';
import { CodecPool } from '../repo/codec-pool.js';
import { PackWriter } from '../repo/pack-writer.js';
import { checkCompressionLevel } from '../repo/config.js';
import { openFileSource } from '../device/file-source.js';
import { probeSignature, PROBE_BYTES } from '../device/probe.js';
import type { BlockSource } from '../device/source.js';
import type { BackupStats, DeviceIdentity } from '../repo/index-file.js';
import type { Target } from '../storage/target.js';
import { backupDevice } from './device-backup.js';
import { BkpError, BlksnapUnavailableError, UsageError } from '../errors.js';
import type { Reporter } from '../report/reporter.js';

export interface BackupRunOptions {
  target: Target;
  devices: string[];
  kind: 'full';
  snapshot: boolean;
  compressionLevel?: number;
  signal?: AbortSignal;
  reporter: Reporter;
}

export interface DeviceOutcome {
  device: string;
  deviceKey: string;
  backupId: string;
  ok: boolean;
  error?: string;
  exitCode?: number;
  stats?: BackupStats;
  size?: number;
}

export interface BackupRunResult {
  backupId: string;
  devices: DeviceOutcome[];
}

export async function identify(source: BlockSource): Promise<DeviceIdentity> {
  const head = Buffer.alloc(Math.min(PROBE_BYTES, source.size));
  await source.read(head, head.length, 0);
  const sig = probeSignature(head);
  return {
    key: deviceKeyOf(source.path),
    path: path.resolve(source.path),
    size: source.size,
    logicalBlockSize: source.logicalBlockSize,
    fsType: sig?.type ?? null,
    fsUuid: sig?.uuid ?? null,
  };
}

export async function runBackup(opts: BackupRunOptions): Promise<BackupRunResult> {
  if (opts.devices.length === 0) throw new UsageError('name at least one --device');
  const keys = opts.devices.map((d) => deviceKeyOf(d));
  if (new Set(keys).size !== keys.length) throw new UsageError('the same device is named twice');
  if (opts.snapshot) {
    throw new BlksnapUnavailableError(
      'blksnap snapshots are not available in this build; pass --no-snapshot to read the device directly (consistent only if nothing writes to it during the backup)',
    );
  }
  const repo = await Repository.open(opts.target);
  const level = opts.compressionLevel ?? repo.config.compression.level;
  checkCompressionLevel(level);
  const lock = await acquireLock(opts.target, `bkp ${opts.kind}`, (m) => opts.reporter.warn(m));
  const pool = new CodecPool();
  const writer = new PackWriter(opts.target, repo.config.packSize);
  const backupId = newBackupId();
  const outcomes: DeviceOutcome[] = [];
  try {
    for (const device of opts.devices) {
      const deviceKey = deviceKeyOf(device);
      let source: BlockSource | undefined;
      try {
        if (opts.signal?.aborted) throw new BkpError('interrupted', 130);
        source = await openFileSource(device);
        const identity = await identify(source);
        opts.reporter.warn(`reading ${device} directly (--no-snapshot): the backup is consistent only if nothing writes to it meanwhile`);
        const parentRef = await repo.latestOf(deviceKey);
        const parent = parentRef ? await repo.readIndex(parentRef).catch(() => null) : null;
        const phase = opts.reporter.phase(`backup ${device}`, identity.size);
        const time = new Date();
        const { stats } = await backupDevice({
          repo,
          pool,
          writer,
          source,
          identity,
          backupId,
          kind: 'full',
          method: { mode: 'full', reason: null },
          parent,
          snapshot: false,
          cbt: null,
          time,
          compressionLevel: level,
          signal: opts.signal,
          onProgress: (b) => phase.update(b),
        });
        phase.done();
        outcomes.push({ device, deviceKey, backupId, ok: true, stats, size: identity.size });
      } catch (e) {
        if (!(e instanceof BkpError)) throw e;
        outcomes.push({ device, deviceKey, backupId, ok: false, error: e.message, exitCode: e.exitCode });
        if (e.exitCode === 130 || e.exitCode === 143) throw e;
        opts.reporter.error(`${device}: ${e.message}`);
      } finally {
        await source?.close();
      }
    }
  } finally {
    await pool.close();
    await lock.release();
  }
  return { backupId, devices: outcomes };
}
