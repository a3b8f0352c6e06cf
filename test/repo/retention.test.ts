/**
 * Retention planning (src/repo/retention.ts): restic-like --keep-last/hourly/daily/weekly/monthly,
 * per device, UTC calendar periods, ISO weeks; a backup kept by any rule is kept.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hasRule, planRetention, type RetentionDecision, type RetentionItem, type RetentionPolicy } from '../../src/repo/retention.js';
import { mulberry32 as rng } from '../support/random.js';

type Item = RetentionItem;

function it(backupId: string, iso: string, deviceKey = 'sda1'): Item {
  const time = new Date(iso);
  assert.ok(!Number.isNaN(time.getTime()), iso);
  return { backupId, deviceKey, time };
}

const ids = (xs: readonly Item[]) => xs.map((x) => x.backupId);
const keptIds = (d: RetentionDecision<Item>) => d.keep.map((k) => k.item.backupId);
const sortedIds = (xs: readonly string[]) => [...xs].sort();
const reasonsOf = (d: RetentionDecision<Item>, id: string, dev = 'sda1') => {
  const k = d.keep.find((x) => x.item.backupId === id && x.item.deviceKey === dev);
  assert.ok(k, `${dev}/${id} not kept`);
  return k.reasons;
};
const RULE = /^(last|hourly|daily|weekly|monthly)\b/;
const ruleNames = (reasons: readonly string[]) =>
  reasons.map((r) => {
    const m = RULE.exec(r);
    assert.ok(m, `reason does not name its rule: ${r}`);
    return m[1]!;
  });

/** keep ∪ remove is exactly the input, each item once (by identity). */
function assertPartition(items: readonly Item[], d: RetentionDecision<Item>): void {
  const out = [...d.keep.map((k) => k.item), ...d.remove];
  assert.equal(out.length, items.length, 'every item in exactly one of keep/remove');
  const set = new Set(out);
  assert.equal(set.size, items.length, 'no item twice');
  for (const x of items) assert.ok(set.has(x), `${x.deviceKey}/${x.backupId} missing from the plan`);
  for (const k of d.keep) assert.ok(k.reasons.length > 0, `${k.item.backupId} kept without a reason`);
}

function plan(items: readonly Item[], p: RetentionPolicy): RetentionDecision<Item> {
  const d = planRetention(items, p);
  assertPartition(items, d);
  return d;
}

function shuffle<T>(xs: readonly T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe('hasRule', () => {
  test('false with no rule, undefined rules or only zeros', () => {
    assert.equal(hasRule({}), false);
    assert.equal(hasRule({ last: undefined, daily: undefined }), false);
    assert.equal(hasRule({ last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0 }), false);
  });
  test('true as soon as one rule keeps something', () => {
    for (const k of ['last', 'hourly', 'daily', 'weekly', 'monthly'] as const) {
      assert.equal(hasRule({ [k]: 1 }), true, k);
      assert.equal(hasRule({ last: 0, [k]: 3 }), true, k);
    }
  });
});

describe('planRetention', () => {
  test('empty input: nothing to keep or remove', () => {
    assert.deepEqual(planRetention([], { last: 3 }), { keep: [], remove: [] });
  });

  test('keep-last N keeps the N newest, whatever the input order', () => {
    const items = [it('c', '2026-01-03T00:00:00Z'), it('a', '2026-01-01T00:00:00Z'), it('e', '2026-01-05T00:00:00Z'), it('b', '2026-01-02T00:00:00Z'), it('d', '2026-01-04T00:00:00Z')];
    const d = plan(items, { last: 3 });
    assert.deepEqual(sortedIds(keptIds(d)), ['c', 'd', 'e']);
    assert.deepEqual(sortedIds(ids(d.remove)), ['a', 'b']);
    for (const id of ['c', 'd', 'e']) assert.deepEqual(ruleNames(reasonsOf(d, id)), ['last']);
  });

  test('keep-daily N: newest of each of the N most recent days that have backups; empty days do not count', () => {
    const items = [
      it('d1-early', '2026-01-01T01:00:00Z'),
      it('d1-noon', '2026-01-01T12:00:00Z'),
      it('d1-late', '2026-01-01T23:59:59.999Z'),
      // 2026-01-02 .. 01-09: nothing
      it('d3-a', '2026-01-03T08:00:00Z'),
      it('d3-b', '2026-01-03T09:00:00Z'),
      it('d10', '2026-01-10T00:00:00Z'),
    ];
    const d2 = plan(items, { daily: 2 });
    assert.deepEqual(sortedIds(keptIds(d2)), ['d10', 'd3-b']);
    assert.deepEqual(ruleNames(reasonsOf(d2, 'd3-b')), ['daily']);
    assert.ok(reasonsOf(d2, 'd3-b')[0]!.includes('2026-01-03'), 'the reason names the day');
    const d3 = plan(items, { daily: 3 });
    assert.deepEqual(sortedIds(keptIds(d3)), ['d1-late', 'd10', 'd3-b']);
    assert.ok(reasonsOf(d3, 'd1-late')[0]!.includes('2026-01-01'));
  });

  test('days are UTC days: a backup at 23:30 −02:00 belongs to the next UTC day', () => {
    const items = [it('x', '2026-01-01T23:30:00-02:00'), it('y', '2026-01-02T00:10:00Z'), it('z', '2026-01-01T20:00:00Z')];
    // x is 2026-01-02T01:30Z, so the newest of Jan 2 is x, and Jan 1's only backup is z
    const d = plan(items, { daily: 2 });
    assert.deepEqual(sortedIds(keptIds(d)), ['x', 'z']);
    assert.ok(reasonsOf(d, 'x')[0]!.includes('2026-01-02'));
  });

  test('keep-hourly: calendar hours, the newest of each', () => {
    const items = [
      it('h10-a', '2026-05-05T10:00:00.000Z'),
      it('h10-b', '2026-05-05T10:59:59.999Z'),
      it('h11', '2026-05-05T11:00:00.000Z'),
      it('h13', '2026-05-05T13:30:00Z'),
      it('h09', '2026-05-05T09:59:59.999Z'),
    ];
    assert.deepEqual(sortedIds(keptIds(plan(items, { hourly: 1 }))), ['h13']);
    assert.deepEqual(sortedIds(keptIds(plan(items, { hourly: 3 }))), ['h10-b', 'h11', 'h13']);
    assert.deepEqual(sortedIds(keptIds(plan(items, { hourly: 4 }))), ['h09', 'h10-b', 'h11', 'h13']);
    assert.deepEqual(ruleNames(reasonsOf(plan(items, { hourly: 2 }), 'h11')), ['hourly']);
  });

  test('keep-monthly: calendar months in UTC, the newest of each; empty months do not count', () => {
    const items = [
      it('jan-31', '2026-01-31T23:59:59.999Z'),
      it('feb-01', '2026-02-01T00:00:00.000Z'),
      it('feb-28', '2026-02-28T12:00:00Z'),
      it('may-01', '2026-05-01T00:00:00Z'),
      it('jan-15', '2026-01-15T00:00:00Z'),
      it('dec-prev', '2025-12-31T23:00:00-05:00'), // = 2026-01-01T04:00Z, a January backup
    ];
    assert.deepEqual(sortedIds(keptIds(plan(items, { monthly: 2 }))), ['feb-28', 'may-01']);
    const d3 = plan(items, { monthly: 3 });
    assert.deepEqual(sortedIds(keptIds(d3)), ['feb-28', 'jan-31', 'may-01']);
    assert.ok(reasonsOf(d3, 'jan-31')[0]!.includes('2026-01'));
    assert.deepEqual(sortedIds(keptIds(plan(items, { monthly: 12 }))), ['feb-28', 'jan-31', 'may-01']);
  });

  test('keep-weekly: ISO weeks across a year end (2026 has 53 weeks)', () => {
    // Thu 2026-12-31, Fri 2027-01-01 and Sun 2027-01-03 are all in 2026-W53; Mon 2027-01-04 starts 2027-W01
    const items = [it('thu', '2026-12-31T12:00:00Z'), it('fri', '2027-01-01T12:00:00Z'), it('sun', '2027-01-03T23:59:59Z'), it('mon', '2027-01-04T00:00:00Z')];
    const d1 = plan(items, { weekly: 1 });
    assert.deepEqual(keptIds(d1), ['mon']);
    assert.ok(reasonsOf(d1, 'mon')[0]!.includes('2027-W01'), reasonsOf(d1, 'mon')[0]);
    const d2 = plan(items, { weekly: 2 });
    assert.deepEqual(sortedIds(keptIds(d2)), ['mon', 'sun']);
    assert.ok(reasonsOf(d2, 'sun')[0]!.includes('2026-W53'), reasonsOf(d2, 'sun')[0]);
    // only two weeks have backups: asking for more keeps nothing else
    assert.deepEqual(sortedIds(keptIds(plan(items, { weekly: 5 }))), ['mon', 'sun']);
    assert.deepEqual(sortedIds(ids(plan(items, { weekly: 5 }).remove)), ['fri', 'thu']);
  });

  test('keep-weekly: a Sunday and the next Monday are different weeks; Monday and Sunday of one week are the same', () => {
    const a = [it('sun', '2026-03-01T23:00:00Z'), it('mon', '2026-03-02T01:00:00Z')];
    assert.deepEqual(sortedIds(keptIds(plan(a, { weekly: 2 }))), ['mon', 'sun']);
    const b = [it('mon', '2026-03-02T00:00:00Z'), it('sun', '2026-03-08T23:59:59Z')];
    assert.deepEqual(keptIds(plan(b, { weekly: 2 })), ['sun']);
  });

  test('keep-weekly: weeks that straddle a year start belong to the year of their Thursday', () => {
    // Mon 2025-12-29 .. Sun 2026-01-04 is 2026-W01; Sun 2021-01-03 is 2020-W53; Mon 2024-12-30 is 2025-W01
    const d = plan([it('dec29', '2025-12-29T06:00:00Z'), it('jan02', '2026-01-02T06:00:00Z')], { weekly: 3 });
    assert.deepEqual(keptIds(d), ['jan02']);
    assert.ok(reasonsOf(d, 'jan02')[0]!.includes('2026-W01'), reasonsOf(d, 'jan02')[0]);
    const e = plan([it('s', '2021-01-03T12:00:00Z'), it('m', '2021-01-04T12:00:00Z'), it('y', '2024-12-30T12:00:00Z')], { weekly: 3 });
    assert.ok(reasonsOf(e, 's')[0]!.includes('2020-W53'), reasonsOf(e, 's')[0]);
    assert.ok(reasonsOf(e, 'm')[0]!.includes('2021-W01'), reasonsOf(e, 'm')[0]);
    assert.ok(reasonsOf(e, 'y')[0]!.includes('2025-W01'), reasonsOf(e, 'y')[0]);
  });

  test('several rules: the union is kept and every rule that keeps a backup is listed', () => {
    const items = [
      it('old', '2025-11-20T10:00:00Z'),
      it('nov-end', '2025-11-30T10:00:00Z'),
      it('dec-a', '2025-12-30T10:00:00Z'),
      it('dec-b', '2025-12-31T10:00:00Z'),
      it('jan-a', '2026-01-02T08:00:00Z'),
      it('jan-b', '2026-01-02T09:00:00Z'),
    ];
    const d = plan(items, { last: 2, daily: 2, weekly: 1, monthly: 3 });
    assert.deepEqual(sortedIds(keptIds(d)), ['dec-b', 'jan-a', 'jan-b', 'nov-end']);
    assert.deepEqual(sortedIds(ruleNames(reasonsOf(d, 'jan-b'))), ['daily', 'last', 'monthly', 'weekly']);
    assert.deepEqual(sortedIds(ruleNames(reasonsOf(d, 'jan-a'))), ['last']);
    assert.deepEqual(sortedIds(ruleNames(reasonsOf(d, 'dec-b'))), ['daily', 'monthly']);
    assert.deepEqual(sortedIds(ruleNames(reasonsOf(d, 'nov-end'))), ['monthly']);
    assert.deepEqual(sortedIds(ids(d.remove)), ['dec-a', 'old']);
  });

  test('per device: one device\'s backups never affect another\'s (same backup ids, as one run shares its id)', () => {
    const a = [it('b1', '2026-01-01T00:00:00Z', 'sda'), it('b2', '2026-01-02T00:00:00Z', 'sda'), it('b3', '2026-01-03T00:00:00Z', 'sda')];
    // sdb: its backups are all newer than sda's
    const b = [it('b3', '2026-01-03T00:00:00Z', 'sdb'), it('b4', '2026-02-01T00:00:00Z', 'sdb'), it('b5', '2026-03-01T00:00:00Z', 'sdb')];
    const policy = { last: 2, daily: 1 };
    const both = plan([...b, ...a], policy);
    const onlyA = plan(a, policy);
    const onlyB = plan(b, policy);
    const view = (d: RetentionDecision<Item>, dev: string) => ({
      keep: d.keep.filter((k) => k.item.deviceKey === dev).map((k) => [k.item.backupId, [...k.reasons].sort()]),
      remove: sortedIds(ids(d.remove.filter((x) => x.deviceKey === dev))),
    });
    assert.deepEqual(view(both, 'sda'), view(onlyA, 'sda'));
    assert.deepEqual(view(both, 'sdb'), view(onlyB, 'sdb'));
    assert.deepEqual(sortedIds(view(both, 'sda').keep.map((k) => k[0] as string)), ['b2', 'b3']);
    // and b3 of sda is kept although b3 of sdb is removed: decided per item, not per backup id
    assert.ok(both.keep.some((k) => k.item.deviceKey === 'sda' && k.item.backupId === 'b3'));
    assert.ok(both.remove.some((x) => x.deviceKey === 'sdb' && x.backupId === 'b3'));
  });

  test('N larger than the number of backups keeps all of them', () => {
    const items = [it('a', '2026-01-01T00:00:00Z'), it('b', '2026-01-01T01:00:00Z'), it('c', '2026-02-03T00:00:00Z')];
    assert.equal(plan(items, { last: 100 }).remove.length, 0);
    assert.deepEqual(sortedIds(keptIds(plan(items, { hourly: 100 }))), ['a', 'b', 'c']);
    assert.deepEqual(sortedIds(keptIds(plan(items, { daily: 100 }))), ['b', 'c']);
  });

  test('N = 0 keeps nothing from that rule (and an all-zero policy removes everything)', () => {
    const items = [it('a', '2026-01-01T00:00:00Z'), it('b', '2026-01-02T00:00:00Z'), it('c', '2026-01-03T00:00:00Z')];
    const d = plan(items, { last: 0, daily: 1, weekly: 0 });
    assert.deepEqual(keptIds(d), ['c']);
    assert.deepEqual(ruleNames(reasonsOf(d, 'c')), ['daily']);
    const none = plan(items, { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0 });
    assert.equal(none.keep.length, 0);
    assert.equal(none.remove.length, 3);
  });

  test('ties in time: the choice does not depend on input order', () => {
    const t = '2026-01-05T10:00:00Z';
    const items = [it('p', t), it('q', t), it('r', t), it('older', '2026-01-04T00:00:00Z')];
    const r = rng(7);
    const ref = plan(items, { last: 1, daily: 2 });
    const norm = (d: RetentionDecision<Item>) => ({ keep: d.keep.map((k) => [k.item.backupId, k.reasons]), remove: sortedIds(ids(d.remove)) });
    for (let i = 0; i < 50; i++) assert.deepEqual(norm(plan(shuffle(items, r), { last: 1, daily: 2 })), norm(ref));
    // one of the tied three is kept (by both rules, as it is the newest), 'older' by daily
    assert.equal(keptIds(ref).filter((x) => ['p', 'q', 'r'].includes(x)).length, 1);
    assert.ok(keptIds(ref).includes('older'));
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests against an independent brute-force reference.

const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Bucket numbers computed arithmetically (not from date strings): 1970-01-01 was a Thursday. */
const REF_BUCKETS: Array<[keyof RetentionPolicy & string, (t: number) => number]> = [
  ['hourly', (t) => Math.floor(t / HOUR)],
  ['daily', (t) => Math.floor(t / DAY)],
  ['weekly', (t) => Math.floor((Math.floor(t / DAY) + 3) / 7)], // weeks starting on Monday
  ['monthly', (t) => { const d = new Date(t); return d.getUTCFullYear() * 12 + d.getUTCMonth(); }],
];

/**
 * Brute force: for each device, for each rule, list the distinct periods that have backups, take
 * the N latest, and keep the latest backup of each. keep-last: the N latest backups.
 * Times must be distinct within a device (ties are tested for determinism separately).
 * Returns, per input position, the sorted set of rule names that keep it.
 */
function reference(items: readonly Item[], p: RetentionPolicy): Array<string[]> {
  const out: Array<Set<string>> = items.map(() => new Set());
  const devices = new Set(items.map((x) => x.deviceKey));
  for (const dev of devices) {
    const idx = items.map((_, i) => i).filter((i) => items[i]!.deviceKey === dev);
    const time = (i: number) => items[i]!.time.getTime();
    // keep-last: an item is among the N newest iff fewer than N items are newer
    for (const i of idx) if (idx.filter((j) => time(j) > time(i)).length < (p.last ?? 0)) out[i]!.add('last');
    for (const [rule, bucket] of REF_BUCKETS) {
      const n = p[rule] ?? 0;
      const periods = [...new Set(idx.map((i) => bucket(time(i))))].sort((x, y) => y - x).slice(0, Math.max(0, n));
      for (const per of periods) {
        const inPer = idx.filter((i) => bucket(time(i)) === per);
        const newest = inPer.reduce((a, b) => (time(b) > time(a) ? b : a));
        out[newest]!.add(rule);
      }
    }
  }
  return out.map((s) => [...s].sort());
}

function randomPolicy(r: () => number): RetentionPolicy {
  const p: RetentionPolicy = {};
  for (const k of ['last', 'hourly', 'daily', 'weekly', 'monthly'] as const) {
    const x = r();
    if (x < 0.35) continue; // undefined
    p[k] = x < 0.45 ? 0 : Math.floor(r() * 7);
  }
  return p;
}

/** Random backups: clustered so that several share an hour/day/week/month. */
function randomItems(r: () => number, distinct: boolean): Item[] {
  const n = Math.floor(r() * 40);
  const devs = ['sda', 'sdb', 'nvme0n1p2'].slice(0, 1 + Math.floor(r() * 3));
  const base = Date.UTC(2025, 11, 20); // spans the 2025/2026/2027 year ends with the scale below
  const scale = [HOUR * 3, DAY * 2, DAY * 20, DAY * 400][Math.floor(r() * 4)]!;
  const used = new Set<string>();
  const items: Item[] = [];
  for (let i = 0; i < n; i++) {
    const dev = devs[Math.floor(r() * devs.length)]!;
    let t = base + Math.floor(r() * scale);
    if (!distinct) t = base + Math.floor(r() * 6) * Math.floor(scale / 6); // many exact ties
    if (distinct) while (used.has(`${dev}@${t}`)) t++;
    used.add(`${dev}@${t}`);
    // ids are shared across devices as in a real run, and not in time order
    items.push({ backupId: `id${Math.floor(r() * 1000).toString().padStart(3, '0')}-${i}`, deviceKey: dev, time: new Date(t) });
  }
  return items;
}

describe('planRetention: properties', () => {
  test('matches the brute-force reference (seeded, 1500 random plans, distinct times)', () => {
    const r = rng(20260101);
    let keptTotal = 0;
    let removedTotal = 0;
    for (let c = 0; c < 1500; c++) {
      const items = randomItems(r, true);
      const p = randomPolicy(r);
      const d = plan(items, p);
      const want = reference(items, p);
      const got = items.map((x) => {
        const k = d.keep.find((e) => e.item === x);
        return k ? ruleNames(k.reasons).sort() : [];
      });
      assert.deepEqual(got, want, `case ${c}: policy ${JSON.stringify(p)} items ${JSON.stringify(items)}`);
      keptTotal += d.keep.length;
      removedTotal += d.remove.length;
    }
    assert.ok(keptTotal > 1000 && removedTotal > 1000, `both outcomes exercised: ${keptTotal} kept, ${removedTotal} removed`);
  });

  test('kept count never exceeds the sum of the rules\' N, per device', () => {
    const r = rng(99);
    for (let c = 0; c < 500; c++) {
      const items = randomItems(r, false);
      const p = randomPolicy(r);
      const cap = (p.last ?? 0) + (p.hourly ?? 0) + (p.daily ?? 0) + (p.weekly ?? 0) + (p.monthly ?? 0);
      const d = plan(items, p);
      for (const dev of new Set(items.map((x) => x.deviceKey))) assert.ok(d.keep.filter((k) => k.item.deviceKey === dev).length <= cap);
    }
  });

  test('result independent of input order, with many exact ties (seeded shuffles)', () => {
    const r = rng(4242);
    // compare per device and per item, independent of the order devices are listed in
    const norm = (d: RetentionDecision<Item>) => ({
      keep: d.keep.map((k) => `${k.item.deviceKey}/${k.item.backupId}: ${k.reasons.join(', ')}`).sort(),
      remove: d.remove.map((x) => `${x.deviceKey}/${x.backupId}`).sort(),
    });
    for (let c = 0; c < 400; c++) {
      const items = randomItems(r, false);
      const p = randomPolicy(r);
      const ref = norm(plan(items, p));
      for (let s = 0; s < 4; s++) assert.deepEqual(norm(plan(shuffle(items, r), p)), ref, `case ${c} shuffle ${s}`);
    }
  });
});
