/**
 * What `bkp snapshot cleanup` may destroy: the snapshots a killed bkp left behind, recognised by
 * their difference storage files (named after the snapshot id) — or, for a bkp killed between
 * CREATE and its first file, by its pending marker (a dead pid) and the snapshot not being taken.
 */
import { SnapshotFailedError, isSystemError } from '../errors.js';
import type { Blksnap } from './blksnap.js';
import { DIFF_FILE_PREFIX, pendingMarkers, type PendingMarker } from './diff-storage.js';
import { promises as fs } from 'node:fs';

export interface CleanupPlan {
  /** Snapshot ids to destroy. */
  destroy: string[];
  /** Snapshot ids left alone (not bkp's, or possibly being set up by a running bkp). */
  keep: string[];
  /** Markers of bkp processes that died, to remove with the snapshots (none while a live bkp has one). */
  staleMarkers: PendingMarker[];
}

/** Taken (has images), not taken yet, or gone meanwhile. */
async function takenState(blksnap: Blksnap, id: string): Promise<'taken' | 'untaken' | 'gone'> {
  try {
    await blksnap.snapshot(id).images();
    return 'taken';
  } catch (e) {
    if (e instanceof SnapshotFailedError && isSystemError(e.cause, 'ENODEV')) return 'untaken';
    if (e instanceof SnapshotFailedError && isSystemError(e.cause, 'ESRCH')) return 'gone';
    throw e;
  }
}

export async function planSnapshotCleanup(blksnap: Blksnap, diffStorageDir: string, all: boolean): Promise<CleanupPlan> {
  const files = (await fs.readdir(diffStorageDir).catch(() => [] as string[])).filter((f) => f.startsWith(DIFF_FILE_PREFIX));
  const named = new Set(files.map((f) => f.slice(DIFF_FILE_PREFIX.length).replace(/-\d+$/, '')));
  const markers = await pendingMarkers(diffStorageDir);
  const staleMarkers = markers.filter((m) => !m.alive);
  // a running bkp between CREATE and its first file owns an unnamed, untaken snapshot too: then
  // an unnamed one cannot be told apart, and is left alone
  const orphansAreOurs = staleMarkers.length > 0 && !markers.some((m) => m.alive);
  // the stale markers go only with the snapshots they vouch for
  const plan: CleanupPlan = { destroy: [], keep: [], staleMarkers: orphansAreOurs ? staleMarkers : [] };
  for (const id of await blksnap.snapshots()) {
    if (all || named.has(id)) {
      plan.destroy.push(id);
      continue;
    }
    // every snapshot bkp takes has files named after it: an unnamed one is ours only untaken
    const state = orphansAreOurs ? await takenState(blksnap, id) : 'taken';
    if (state === 'untaken') plan.destroy.push(id);
    else if (state === 'taken') plan.keep.push(id);
  }
  return plan;
}
