/**
 * Pure: should a job's run be a full or an incremental backup? ("full every 7 days, incremental
 * otherwise"). A job backs all its devices up in one run — one snapshot of all of them — so the
 * run is full when any of its devices needs a full:
 *   - the device has no backup in the repository (every index is complete, so any backup, full
 *     or incremental, can be the next incremental's parent: retention that removed the fulls
 *     does not force a new one), or
 *   - the job has `fullEvery` and the device's last full is that old (less a tolerance, so a
 *     weekly timer that fires a few seconds early — backup times are snapshot times, taken a
 *     little after the run starts — still gets its full). The last full is the newest of the
 *     fulls still in the repository and of the `lastFullTime` each backup carries (so a full
 *     that retention removed still counts); when neither is known the full is due.
 * Otherwise incremental (which itself falls back to a digest comparison when the chain broke).
 */
import { fmtAge } from '../shared/durations.js';

export interface ScheduledDevice {
  device: string;
  /** The device's backups in the repository (any order). */
  backups: ReadonlyArray<{ time: Date; kind: 'full' | 'incr'; lastFullTime?: Date | null }>;
}

export interface ScheduleDecision {
  kind: 'full' | 'incr';
  reason: string;
}

/** At most an hour, and at most a tenth of the period. */
export function fullTolerance(fullEvery: number): number {
  return Math.min(3_600_000, Math.floor(fullEvery / 10));
}

/** When the device's last full backup was taken, as far as its backups tell; undefined if unknown. */
export function lastFullOf(d: ScheduledDevice): number | undefined {
  let last: number | undefined;
  for (const b of d.backups) {
    const t = b.kind === 'full' ? b.time.getTime() : b.lastFullTime?.getTime();
    if (t !== undefined && (last === undefined || t > last)) last = t;
  }
  return last;
}

/**
 * What a new backup records as its `lastFullTime`: its own time for a full; for an incremental,
 * what its device's previous backup knew (null when there is none or it does not say).
 */
export function carriedLastFullTime(kind: 'full' | 'incr', time: string, previous: { kind: 'full' | 'incr'; time: string; lastFullTime?: string | null } | null): string | null {
  if (kind === 'full') return time;
  if (!previous) return null;
  return previous.kind === 'full' ? previous.time : (previous.lastFullTime ?? null);
}

export function decideKind(devices: readonly ScheduledDevice[], fullEvery: number | undefined, now: Date): ScheduleDecision {
  for (const d of devices) {
    if (d.backups.length === 0) return { kind: 'full', reason: `no backup of ${d.device} in the repository yet` };
    if (fullEvery !== undefined) {
      const last = lastFullOf(d);
      if (last === undefined) return { kind: 'full', reason: `no full backup of ${d.device} is known (full every ${fmtAge(fullEvery)})` };
      const age = now.getTime() - last;
      if (age >= fullEvery - fullTolerance(fullEvery)) {
        return { kind: 'full', reason: `the last full backup of ${d.device} is ${fmtAge(age)} old (full every ${fmtAge(fullEvery)})` };
      }
    }
  }
  return {
    kind: 'incr',
    reason: fullEvery === undefined ? 'every device has a backup (no schedule.fullEvery)' : `every device has a full backup younger than ${fmtAge(fullEvery)}`,
  };
}
