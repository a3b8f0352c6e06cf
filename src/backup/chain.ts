/**
 * Pure decisions of an incremental backup: may it trust the CBT map (a valid chain), or must it
 * read everything and compare digests (and why)? The rules are shared/docs/blksnap.md's
 * "Incremental rule" plus what the repository knows about the previous backup.
 */
import { incrementalBase } from '../blksnap/cbt.js';
import { pieceSizeFor, type CbtState, type IndexHeader } from '../repo/index-file.js';

export type IncrementalMethod = { mode: 'cbt'; reason: null } | { mode: 'digest'; reason: string };

export interface ChainInput {
  /** Header of the device's newest committed backup, if any. */
  previous: IndexHeader | null;
  /** Why the previous backup cannot be used, when it is damaged (index or packs). */
  previousDamage: string | null;
  /** CBT state of the snapshot just taken; null when reading without a snapshot. */
  current: CbtState | null;
  deviceSize: number;
  chunkSize: number;
}

export function chooseIncrementalMethod(c: ChainInput): IncrementalMethod {
  const digest = (reason: string): IncrementalMethod => ({ mode: 'digest', reason });
  if (!c.current) return digest('no snapshot (--no-snapshot), so no change tracking: every chunk was read and compared');
  if (!c.previous) return digest('no previous backup of this device in the repository');
  if (c.previousDamage !== null) return digest(`the previous backup ${c.previous.backupId} is damaged (${c.previousDamage})`);
  if (c.previous.device.size !== c.deviceSize) return digest(`the device size changed (${c.previous.device.size} → ${c.deviceSize} bytes)`);
  if (c.previous.chunkSize !== c.chunkSize) return digest('the previous backup used another chunk size');
  if (c.previous.pieceSize !== pieceSizeFor(c.chunkSize)) return digest('the previous backup used another piece size');
  const base = c.previous.cbt;
  if (!base) return digest(`the previous backup ${c.previous.backupId} has no change-tracking state (made without a snapshot)`);
  const d = incrementalBase(
    { generationId: base.generationId, snapNumber: base.snapNumber, deviceCapacity: c.previous.device.size, blkSize: base.blockSize, blkCount: base.blockCount },
    { generationId: c.current.generationId, snapNumber: c.current.snapNumber, deviceCapacity: c.deviceSize, blkSize: c.current.blockSize, blkCount: c.current.blockCount },
  );
  return d.ok ? { mode: 'cbt', reason: null } : digest(d.reason);
}
