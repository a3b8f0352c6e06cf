/** The full-or-incremental decision of bkp run. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { decideKind, fullTolerance, carriedLastFullTime, type ScheduledDevice } from '../../src/backup/schedule.js';
import { fmtAge } from '../../src/shared/durations.js';
import { planRetention, type RetentionPolicy } from '../../src/repo/retention.js';

const DAY = 86_400_000;
const now = new Date('2026-03-10T02:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms);

describe('schedule', () => {
  test('no backup at all: full', () => {
    const d = decideKind([{ device: '/dev/sdb', backups: [] }], 7 * DAY, now);
    assert.equal(d.kind, 'full');
    assert.match(d.reason, /no backup of \/dev\/sdb/);
  });

  test('only incrementals, no fullEvery: incr (every index is complete, any backup is a parent)', () => {
    const d = decideKind([{ device: '/dev/sdb', backups: [{ time: ago(DAY), kind: 'incr' }] }], undefined, now);
    assert.equal(d.kind, 'incr');
  });

  test('only incrementals with fullEvery: the last full they carry counts, unknown means due', () => {
    const pruned = (lastFull: Date | null): ScheduledDevice[] => [{ device: '/dev/sdb', backups: [{ time: ago(DAY), kind: 'incr', lastFullTime: lastFull }] }];
    assert.equal(decideKind(pruned(ago(2 * DAY)), 7 * DAY, now).kind, 'incr', 'the full was pruned 2 days after it was taken');
    const due = decideKind(pruned(ago(8 * DAY)), 7 * DAY, now);
    assert.equal(due.kind, 'full');
    assert.match(due.reason, /last full backup of \/dev\/sdb is 8d old/);
    const unknown = decideKind(pruned(null), 7 * DAY, now);
    assert.equal(unknown.kind, 'full', 'indexes written before lastFullTime existed');
    assert.match(unknown.reason, /no full backup of \/dev\/sdb is known/);
  });

  test('what a backup carries: a full its own time, an incr its previous backup\'s', () => {
    assert.equal(carriedLastFullTime('full', 'T2', { kind: 'incr', time: 'T1', lastFullTime: 'T0' }), 'T2');
    assert.equal(carriedLastFullTime('incr', 'T2', { kind: 'full', time: 'T1', lastFullTime: 'T1' }), 'T1');
    assert.equal(carriedLastFullTime('incr', 'T2', { kind: 'incr', time: 'T1', lastFullTime: 'T0' }), 'T0');
    assert.equal(carriedLastFullTime('incr', 'T2', { kind: 'incr', time: 'T1' }), null, 'an index older than the field');
    assert.equal(carriedLastFullTime('incr', 'T2', null), null);
  });

  test('a recent full: incr; without fullEvery a full is never due again', () => {
    const backups = [{ time: ago(3 * DAY), kind: 'full' as const }, { time: ago(DAY), kind: 'incr' as const }];
    assert.equal(decideKind([{ device: '/dev/sdb', backups }], 7 * DAY, now).kind, 'incr');
    const never = decideKind([{ device: '/dev/sdb', backups: [{ time: ago(400 * DAY), kind: 'full' }] }], undefined, now);
    assert.equal(never.kind, 'incr');
    assert.match(never.reason, /no schedule\.fullEvery/);
  });

  test('the newest full counts, not the oldest', () => {
    const backups = [{ time: ago(20 * DAY), kind: 'full' as const }, { time: ago(2 * DAY), kind: 'full' as const }];
    assert.equal(decideKind([{ device: '/dev/sdb', backups }], 7 * DAY, now).kind, 'incr');
  });

  test('a full that is fullEvery old: full, with the age in the reason', () => {
    const d = decideKind([{ device: '/dev/sdb', backups: [{ time: ago(8 * DAY), kind: 'full' }] }], 7 * DAY, now);
    assert.equal(d.kind, 'full');
    assert.match(d.reason, /last full backup of \/dev\/sdb is 8d old \(full every 7d\)/);
  });

  test('a weekly timer that fires a little early still gets its full (tolerance), a day early does not', () => {
    const early = 7 * DAY - 5 * 60_000; // the previous full's snapshot was taken 5 minutes after its run started
    assert.equal(decideKind([{ device: '/dev/sdb', backups: [{ time: ago(early), kind: 'full' }] }], 7 * DAY, now).kind, 'full');
    assert.equal(decideKind([{ device: '/dev/sdb', backups: [{ time: ago(6 * DAY), kind: 'full' }] }], 7 * DAY, now).kind, 'incr');
    assert.equal(fullTolerance(7 * DAY), 3_600_000);
    assert.equal(fullTolerance(60 * 60_000), 6 * 60_000, 'a tenth of short periods');
    assert.equal(decideKind([{ device: '/dev/sdb', backups: [{ time: ago(7 * DAY - 3_600_000 - 1), kind: 'full' }] }], 7 * DAY, now).kind, 'incr');
  });

  test('several devices: any device due makes the whole run full (one snapshot of all)', () => {
    const fresh = { device: '/dev/sda', backups: [{ time: ago(DAY), kind: 'full' as const }] };
    const added = { device: '/dev/sdc', backups: [] };
    const d = decideKind([fresh, added], 7 * DAY, now);
    assert.equal(d.kind, 'full');
    assert.match(d.reason, /\/dev\/sdc/);
    assert.equal(decideKind([fresh, fresh], 7 * DAY, now).kind, 'incr');
  });

  test('a full in the future (clock set back): incr, not a full every run', () => {
    assert.equal(decideKind([{ device: '/dev/sdb', backups: [{ time: new Date(now.getTime() + DAY), kind: 'full' }] }], 7 * DAY, now).kind, 'incr');
  });

  test('ages read as people write them', () => {
    assert.equal(fmtAge(7 * DAY), '7d');
    assert.equal(fmtAge(DAY + 3 * 3_600_000), '1d 3h');
    assert.equal(fmtAge(90 * 60_000), '1h 30m');
    assert.equal(fmtAge(59_000), '0m');
  });

  /**
   * `bkp run` twice a day for 8 weeks, the schedule deciding and the retention pruning after each
   * backup, as run-job.ts does: retention never makes the schedule ask for more fulls than its
   * cadence (issue 18 item 5: keepDaily removed the morning full, and the next run made a new one).
   */
  function simulate(fullEvery: number | undefined, policy: RetentionPolicy): Array<{ time: Date; kind: 'full' | 'incr' }> {
    type B = { backupId: string; deviceKey: string; time: Date; kind: 'full' | 'incr'; lastFullTime: string | null };
    let repo: B[] = [];
    const made: Array<{ time: Date; kind: 'full' | 'incr' }> = [];
    const start = Date.parse('2026-03-02T00:00:00Z');
    for (let day = 0; day < 56; day++) {
      for (const hour of [2, 14]) {
        const t = new Date(start + day * DAY + hour * 3_600_000 + 7 * 60_000);
        const dev: ScheduledDevice = { device: '/dev/sdb', backups: repo.map((b) => ({ time: b.time, kind: b.kind, lastFullTime: b.lastFullTime ? new Date(b.lastFullTime) : null })) };
        const { kind } = decideKind([dev], fullEvery, t);
        const previous = [...repo].sort((a, b) => b.time.getTime() - a.time.getTime())[0];
        const prevHeader = previous ? { kind: previous.kind, time: previous.time.toISOString(), lastFullTime: previous.lastFullTime } : null;
        repo.push({ backupId: t.toISOString(), deviceKey: 'dev-sdb', time: t, kind, lastFullTime: carriedLastFullTime(kind, t.toISOString(), prevHeader) });
        made.push({ time: t, kind });
        const keep = new Set(planRetention(repo, policy).keep.map((k) => k.item.backupId));
        repo = repo.filter((b) => keep.has(b.backupId));
      }
    }
    return made;
  }

  test('keepDaily with two runs a day and fullEvery 7d: one full a week, never more', () => {
    const made = simulate(7 * DAY, { daily: 7 });
    const fulls = made.filter((m) => m.kind === 'full');
    assert.equal(fulls.length, 8, `fulls at ${fulls.map((f) => f.time.toISOString()).join(', ')}`);
    for (let i = 1; i < fulls.length; i++) assert.equal(fulls[i]!.time.getTime() - fulls[i - 1]!.time.getTime(), 7 * DAY);
  });

  test('keepDaily or keepLast without fullEvery: only the very first run is a full', () => {
    for (const policy of [{ daily: 7 }, { daily: 1 }, { last: 1 }, { last: 2, weekly: 4 }] as RetentionPolicy[]) {
      const made = simulate(undefined, policy);
      assert.deepEqual(made.map((m) => m.kind).filter((k) => k === 'full').length, 1, JSON.stringify(policy));
      assert.equal(made[0]!.kind, 'full');
    }
  });

  test('keepLast 1 with fullEvery 7d: the cadence holds although every full is pruned at the next run', () => {
    const fulls = simulate(7 * DAY, { last: 1 }).filter((m) => m.kind === 'full');
    assert.equal(fulls.length, 8);
  });
});
