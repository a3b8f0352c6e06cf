/** The full-or-incremental decision of bkp run. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { decideKind, fullTolerance } from '../../src/backup/schedule.js';
import { fmtAge } from '../../src/shared/durations.js';

const DAY = 86_400_000;
const now = new Date('2026-03-10T02:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms);

describe('schedule', () => {
  test('no backup at all: full', () => {
    const d = decideKind([{ device: '/dev/sdb', backups: [] }], 7 * DAY, now);
    assert.equal(d.kind, 'full');
    assert.match(d.reason, /no full backup of \/dev\/sdb/);
  });

  test('only incrementals (the fulls were pruned, or someone ran incr first): full', () => {
    const d = decideKind([{ device: '/dev/sdb', backups: [{ time: ago(DAY), kind: 'incr' }] }], undefined, now);
    assert.equal(d.kind, 'full');
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
    assert.match(d.reason, /newest full backup of \/dev\/sdb is 8d old \(full every 7d\)/);
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
});
