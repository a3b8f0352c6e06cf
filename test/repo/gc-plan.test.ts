/** gc's plan (src/repo/gc-plan.ts): the one decision the dry run and the real run share. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planGc, type LiveEnvelope, type PackObject } from '../../src/repo/gc-plan.js';

const env = (length: number): LiveEnvelope => ({ length, id: Buffer.alloc(32), plainLength: length });
const live = (spec: Record<string, number[]>) => new Map(Object.entries(spec).map(([p, lens]) => [p, new Map(lens.map((l, i) => [i * 1000, env(l)]))]));
const pack = (id: string, size: number, archived = false): PackObject => ({ id, size, archived });
const ids = (ps: PackObject[]) => ps.map((p) => p.id);

test('unreferenced packs are removed, mostly-garbage ones repacked, the rest kept', () => {
  const packs = [pack('a', 1000), pack('b', 1000), pack('c', 1000), pack('d', 1000)];
  const plan = planGc(packs, live({ b: [499], c: [500], d: [300, 300] }), 0.5);
  assert.deepEqual(ids(plan.remove), ['a']);
  assert.deepEqual(ids(plan.repack), ['b'], 'less than half referenced');
  assert.deepEqual(ids(plan.keep), ['c', 'd'], 'half or more referenced');
});

test('an archived pack is never repacked (it cannot be read without a thaw); 0 disables repacking', () => {
  const packs = [pack('a', 1000, true), pack('b', 1000)];
  assert.deepEqual(ids(planGc(packs, live({ a: [10], b: [10] }), 0.5).repack), ['b']);
  assert.deepEqual(ids(planGc(packs, live({ a: [10], b: [10] }), 0).repack), []);
  assert.deepEqual(ids(planGc(packs, live({ a: [10] }), 0.5).remove), ['b'], 'an archived pack no index references is removed like any other');
});

test('a pack an index names but the listing lacks is no part of the plan (verify reports it)', () => {
  const plan = planGc([pack('a', 1000)], live({ a: [900], gone: [100] }), 0.5);
  assert.deepEqual([ids(plan.remove), ids(plan.repack), ids(plan.keep)], [[], [], ['a']]);
});
