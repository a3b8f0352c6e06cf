/**
 * Pure: should a job's run be a full or an incremental backup? ("full every 7 days, incremental
 * otherwise"). A job backs all its devices up in one run — one snapshot of all of them — so the
 * run is full when any of its devices needs a full:
 *   - the device has no full backup in the repository, or
 *   - the job has `fullEvery` and the device's newest full is that old (less a tolerance, so a
 *     weekly timer that fires a few seconds early — backup times are snapshot times, taken a
 *     little after the run starts — still gets its full).
 * Otherwise incremental (which itself falls back to a digest comparison when the chain broke).
 */
import { fmtAge } from '../shared/durations.js';

export interface ScheduledDevice {
  device: string;
  /** The device's backups in the repository (any order). */
  backups: ReadonlyArray<{ time: Date; kind: 'full' | 'incr' }>;
}

export interface ScheduleDecision {
  kind: 'full' | 'incr';
  reason: string;
}

/** At most an hour, and at most a tenth of the period. */
export function fullTolerance(fullEvery: number): number {
  return Math.min(3_600_000, Math.floor(fullEvery / 10));
}

export function decideKind(devices: readonly ScheduledDevice[], fullEvery: number | undefined, now: Date): ScheduleDecision {
  for (const d of devices) {
    const fulls = d.backups.filter((b) => b.kind === 'full').map((b) => b.time.getTime());
    if (fulls.length === 0) return { kind: 'full', reason: `no full backup of ${d.device} in the repository yet` };
    if (fullEvery !== undefined) {
      const age = now.getTime() - Math.max(...fulls);
      if (age >= fullEvery - fullTolerance(fullEvery)) {
        return { kind: 'full', reason: `the newest full backup of ${d.device} is ${fmtAge(age)} old (full every ${fmtAge(fullEvery)})` };
      }
    }
  }
  return {
    kind: 'incr',
    reason: fullEvery === undefined ? 'every device has a full backup (no schedule.fullEvery)' : `every device has a full backup younger than ${fmtAge(fullEvery)}`,
  };
}
