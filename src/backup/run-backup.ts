/**
 * `bkp full` and `bkp incr`: lock the devices and the repository, take one blksnap snapshot across all devices
 * (or read them directly with --no-snapshot), back each device up, commit its index, and release
 * everything — snapshot, difference storage, lock — whatever happens.
 */
import * as path from 'node:path';
import { Repository, deviceKeyOf, newBackupId } from '../repo/repository.js';
import { acquireLock, type RepoLock } from '../repo/lock.js';
import { acquireDeviceLocks } from '../lock/device-lock.js';
import { CodecPool } from '../repo/codec-pool.js';
import { PackWriter } from '../repo/pack-writer.js';
import { checkCompressionLevel } from '../repo/config.js';
import { maskLength, pieceSizeFor, type BackupIndex, type BackupStats, type CbtState, type DeviceIdentity, type IndexEntries, type IndexHeader } from '../repo/index-file.js';
import { openFileSource } from '../device/file-source.js';
import { sourceFacts } from '../device/facts.js';
import { mountedReadWrite } from '../device/mounts.js';
import { probeSignature, PROBE_BYTES } from '../device/probe.js';
import type { BlockSource } from '../device/source.js';
import type { Target } from '../storage/target.js';
import { tryOpenBlksnap, SnapshotSession, CbtMapUnavailableError } from '../blksnap/index.js';
import { backupDevice, parentInDamagedPacks } from './device-backup.js';
import { chooseIncrementalMethod } from './chain.js';
import { carriedLastFullTime } from './schedule.js';
import { markedPieces } from './region-plan.js';
import { BkpError, BlksnapUnavailableError, ChainBrokenError, CorruptError, ExitCode, LockedError, UsageError } from '../errors.js';
import type { Reporter } from '../report/reporter.js';
import { pausePoint } from '../faults.js';

export interface BackupRunOptions {
  target: Target;
  devices: string[];
  kind: 'full' | 'incr';
  snapshot: boolean;
  /** incr: fail (exit 23) instead of reading everything when the chain is not valid. */
  noFallback?: boolean;
  compressionLevel?: number;
  blksnapDevice?: string;
  diffStorageDir: string;
  diffStorageLimit: number;
  signal?: AbortSignal;
  reporter: Reporter;
  /** Called with a cleanup that must run even if the process is about to exit (second signal). */
  onCleanup?: (fn: () => Promise<void>) => void;
}

export interface IncrementalReport {
  mode: 'full' | 'cbt' | 'digest';
  reason: string | null;
  /** Bytes the CBT map marked as changed (cbt mode). */
  cbtChangedBytes?: number;
  /** Bytes of chunks whose content really changed since the parent. */
  changedBytes: number;
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
  method?: IncrementalReport;
  /** Chunks the previous backup holds in damaged packs, read again from the device and stored anew. */
  damagedReread?: number;
}

export interface BackupRunResult {
  backupId: string;
  kind: 'full' | 'incr';
  snapshot: boolean;
  devices: DeviceOutcome[];
  warnings: string[];
}

export async function identify(source: BlockSource, devicePath: string): Promise<DeviceIdentity> {
  const head = Buffer.alloc(Math.min(PROBE_BYTES, source.size));
  await source.read(head, head.length, 0);
  const sig = probeSignature(head);
  return {
    key: deviceKeyOf(devicePath),
    path: path.resolve(devicePath),
    size: source.size,
    logicalBlockSize: source.logicalBlockSize,
    fsType: sig?.type ?? null,
    fsUuid: sig?.uuid ?? null,
  };
}

/** The previous backup of a device and, if it cannot serve as a parent, why. */
async function previousOf(repo: Repository, deviceKey: string, packIds: () => Promise<Set<string>>): Promise<{ index: BackupIndex | null; header: IndexHeader | null; damage: string | null }> {
  const ref = await repo.latestOf(deviceKey, { cached: true }); // under the lock, taken before
  if (!ref) return { index: null, header: null, damage: null };
  try {
    const index = await repo.readIndex(ref, { cache: true });
    const present = await packIds();
    const missing = index.packs.find((p) => !present.has(p));
    return { index, header: index.header, damage: missing ? `pack ${missing} is missing` : null };
  } catch (e) {
    if (!(e instanceof CorruptError)) throw e;
    const header = await repo.readIndexHeader(ref).catch(() => null);
    return { index: null, header, damage: e.message };
  }
}

/**
 * Bytes whose stored form differs from the parent's: a region whose base changed counts whole, a
 * region with only another patch counts the pieces either patch covers.
 */
function changedBytes(index: BackupIndex, parent: BackupIndex | null): number {
  const e = index.entries;
  const p = parent?.entries;
  const same = (a: IndexEntries, b: IndexEntries, r: number) => a.hasRef(r) === b.hasRef(r) && (!a.hasRef(r) || a.refIdEquals(r, b.refId(r)));
  let n = 0;
  for (let i = 0; i < e.length; i++) {
    if (!p || i >= p.length || !same(e, p, 2 * i)) n += e.regionLength(i);
    else if (!same(e, p, 2 * i + 1) || e.patchMask(i) !== p.patchMask(i)) n += maskLength(e.patchMask(i) | p.patchMask(i), index.header.pieceSize, e.regionLength(i));
  }
  return n;
}

export async function runBackup(opts: BackupRunOptions): Promise<BackupRunResult> {
  const { reporter } = opts;
  if (opts.devices.length === 0) throw new UsageError('name at least one --device');
  const keys = opts.devices.map((d) => deviceKeyOf(d));
  if (new Set(keys).size !== keys.length) throw new UsageError('the same device is named twice');
  if (opts.kind === 'incr' && opts.noFallback && !opts.snapshot) {
    throw new UsageError('--no-fallback needs a snapshot: without change tracking every incremental reads and compares all chunks');
  }
  for (const d of opts.devices) await sourceFacts(d); // missing or not a device: fail before anything else
  const repo = await Repository.open(opts.target);
  const level = opts.compressionLevel ?? repo.config.compression.level;
  checkCompressionLevel(level);

  let blksnap: Awaited<ReturnType<typeof tryOpenBlksnap>> = null;
  if (opts.snapshot) {
    blksnap = await tryOpenBlksnap({ controlDevice: opts.blksnapDevice });
    if (!blksnap) {
      throw new BlksnapUnavailableError(
        'blksnap module is not loaded (modprobe blksnap, or install blksnap); or pass --no-snapshot to read the devices directly (consistent only if nothing writes to them)',
      );
    }
  }
  const command = `bkp ${opts.kind} ${opts.devices.join(' ')}`;
  // one bkp per device (whatever the repository), then one writer per repository
  const deviceLocks = await acquireDeviceLocks(opts.devices, command, (m) => reporter.warn(m));
  let lock: RepoLock;
  try {
    lock = await acquireLock(opts.target, command, (m) => reporter.warn(m));
  } catch (e) {
    await deviceLocks.release();
    throw e;
  }
  await pausePoint('backup-locked');
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    reporter.warn(m);
  };
  let session: SnapshotSession | undefined;
  let pool: CodecPool | undefined;
  const backupId = newBackupId();
  const outcomes: DeviceOutcome[] = [];
  try {
    if (blksnap) {
      session = await SnapshotSession.start({
        blksnap,
        devices: opts.devices,
        diffStorageDir: opts.diffStorageDir,
        diffStorageLimit: opts.diffStorageLimit,
        onWarning: warn,
      });
      const s = session;
      opts.onCleanup?.(() => s.close());
      await pausePoint('snapshot-taken');
    } else {
      warn(`reading ${opts.devices.join(', ')} directly (--no-snapshot): the backup is consistent only if nothing writes to ${opts.devices.length > 1 ? 'them' : 'it'} meanwhile`);
      for (const device of opts.devices) {
        const at = await mountedReadWrite(device);
        if (at.length === 0) continue;
        // about the consistency of the data stored: shown also with --quiet
        const m = `${device} is mounted read-write on ${at.join(', ')}: without a snapshot its backup may be inconsistent (files changed while it was read); use a snapshot, or unmount or remount it read-only first`;
        warnings.push(m);
        reporter.warn(m, { always: true });
      }
    }
    const time = new Date();
    pool = new CodecPool();
    const writer = new PackWriter(opts.target, repo.config.packSize);
    const packIds = () => repo.presentPacks();

    for (const device of opts.devices) {
      const deviceKey = deviceKeyOf(device);
      let source: BlockSource | undefined;
      try {
        if (opts.signal?.aborted) throw new BkpError('interrupted', ExitCode.INTERRUPTED);
        source = session ? session.source(device) : await openFileSource(device);
        await pausePoint('source-opened');
        const identity = await identify(source, device);
        const cbtInfo = session?.cbt(device);
        const cbt: CbtState | null = cbtInfo
          ? { generationId: cbtInfo.generationId, snapNumber: cbtInfo.snapNumber, blockSize: cbtInfo.blkSize, blockCount: cbtInfo.blkCount }
          : null;
        const prev = await previousOf(repo, deviceKey, packIds);
        let method: IndexHeader['method'] = { mode: 'full', reason: null };
        let marked: Map<number, bigint> | undefined;
        let cbtChangedBytes: number | undefined;
        if (opts.kind === 'incr') {
          const m = chooseIncrementalMethod({ previous: prev.header, previousDamage: prev.damage, current: cbt, deviceSize: identity.size, chunkSize: repo.config.chunkSize });
          if (m.mode === 'digest' && opts.noFallback) throw new ChainBrokenError(`${device}: cannot back up incrementally: ${m.reason} (--no-fallback)`);
          method = m;
          let map: Uint8Array | undefined;
          if (m.mode === 'cbt') {
            try {
              map = await session!.readCbtMap(device);
              if (map.length !== cbt!.blockCount) throw new CbtMapUnavailableError(`the CBT map has ${map.length} blocks, the snapshot ${cbt!.blockCount}`);
            } catch (e) {
              if (!(e instanceof CbtMapUnavailableError)) throw e;
              method = { mode: 'digest', reason: `the CBT map could not be read completely (${e.message})` };
              if (opts.noFallback) throw new ChainBrokenError(`${device}: cannot back up incrementally: ${method.reason} (--no-fallback)`);
              reporter.info(`${device}: reading every chunk and comparing digests: ${method.reason}`);
            }
          }
          if (map) {
            const base = prev.header!.cbt!.snapNumber;
            const changed: number[] = [];
            cbtChangedBytes = 0;
            for (let b = 0; b < cbt!.blockCount; b++) {
              if (map[b]! <= base) continue;
              changed.push(b);
              cbtChangedBytes += Math.max(0, Math.min(cbt!.blockSize, identity.size - b * cbt!.blockSize));
            }
            const g = { deviceSize: identity.size, regionSize: repo.config.chunkSize, pieceSize: pieceSizeFor(repo.config.chunkSize) };
            marked = markedPieces(g, cbt!.blockSize, changed);
          } else if (m.mode === 'digest') {
            reporter.info(`${device}: reading every chunk and comparing digests: ${m.reason}`);
          }
        }
        const parent = prev.damage ? null : prev.index;
        const damagedPacks = await repo.damagedPacks();
        const reread = marked ? parentInDamagedPacks(parent, damagedPacks) : [];
        const phase = reporter.phase(`${opts.kind} ${device}`, marked ? new Set([...marked.keys(), ...reread]).size * repo.config.chunkSize : identity.size);
        const { index, stats, damagedReread } = await backupDevice({
          repo,
          pool,
          writer,
          source,
          identity,
          backupId,
          kind: opts.kind,
          method,
          parent,
          damagedPacks,
          marked,
          comparePieces: method.mode === 'digest',
          snapshot: !!session,
          cbt,
          time,
          lastFullTime: carriedLastFullTime(opts.kind, time.toISOString(), prev.header),
          compressionLevel: level,
          signal: opts.signal,
          onProgress: (b) => phase.update(b),
          beforeCommit: async () => {
            await lock.assertHeld();
            await session?.assertIntact(device);
          },
          warn: (m) => warn(`${device}: ${m}`),
        });
        phase.done();
        outcomes.push({
          device,
          deviceKey,
          backupId,
          ok: true,
          stats,
          size: identity.size,
          method: { mode: method.mode, reason: method.reason, cbtChangedBytes, changedBytes: changedBytes(index, parent) },
          damagedReread,
        });
      } catch (caught) {
        // a writer whose lock was taken over fails in whatever it touched next (a pack file the
        // new holder's gc removed reads as "repository does not exist"): say what happened
        const e = caught instanceof LockedError ? caught : ((await lock.takenOver().catch(() => undefined)) ?? caught);
        if (!(e instanceof BkpError)) throw e;
        outcomes.push({ device, deviceKey, backupId, ok: false, error: e.message, exitCode: e.exitCode });
        if (e instanceof LockedError) throw e; // the lock is gone: no other device can be committed
        if (e.exitCode === ExitCode.INTERRUPTED || e.exitCode === ExitCode.TERMINATED) throw e;
        reporter.error(`${device}: ${e.message}`);
      } finally {
        if (!session) await source?.close();
      }
    }
  } finally {
    await session?.close().catch((e: unknown) => reporter.error(`releasing the snapshot: ${(e as Error).message}; run bkp snapshot cleanup`));
    await pool?.close();
    await lock.release();
    await deviceLocks.release();
  }
  return { backupId, kind: opts.kind, snapshot: !!session, devices: outcomes, warnings };
}
