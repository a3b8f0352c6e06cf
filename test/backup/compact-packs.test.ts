import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compactPacks } from '../../src/backup/device-backup.js';
import { IndexEntries, type BackupIndex, type IndexHeader } from '../../src/repo/index-file.js';

const packId = (n: number) => n.toString(16).padStart(32, '0');
const header = {} as IndexHeader;

test('the pack table lists the packs used, each once, in order of first use; ordinals follow, in place', () => {
  const packs = [packId(0), packId(1), packId(2), packId(1)]; // pack 0 unused, pack 1 listed twice
  const entries = IndexEntries.alloc(4);
  entries.setData(0, 2, 0, 60, 10, Buffer.alloc(32, 1));
  entries.setZero(1, 10);
  entries.setPatch(1, 1n, 0 + 3, 180, 60, 10, Buffer.alloc(32, 4)); // a patch over zeros, in pack 1 (listed twice)
  entries.setData(2, 3, 60, 60, 10, Buffer.alloc(32, 2));
  entries.setData(3, 1, 120, 60, 10, Buffer.alloc(32, 3));
  const index: BackupIndex = { header, packs, entries };
  const out = compactPacks(index);
  assert.equal(out.packs, packs, 'the same array');
  assert.deepEqual(packs, [packId(2), packId(1)]);
  const where = (r: number) => (entries.hasRef(r) ? packs[entries.refPack(r)] : null);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(where), [packId(2), null, null, packId(1), packId(1), null, packId(1), null]);
});

test('a pack table of 300,000 packs is compacted (no spread of the table into one call)', () => {
  const n = 300_000;
  const packs = Array.from({ length: n }, (_, i) => packId(i));
  const entries = IndexEntries.alloc(n);
  for (let i = 0; i < n; i++) entries.setData(i, n - 1 - i, 0, 60, 10, Buffer.alloc(32, i % 256));
  compactPacks({ header, packs, entries });
  assert.equal(packs.length, n);
  assert.equal(packs[0], packId(n - 1));
  assert.equal(entries.refPack(2 * (n - 1)), n - 1);
  assert.equal(packs[entries.refPack(2 * 12345)], packId(n - 1 - 12345));
});
