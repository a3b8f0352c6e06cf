import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compactPacks } from '../../src/backup/device-backup.js';
import { ENTRY_DATA, ENTRY_ZERO, IndexEntries, type BackupIndex, type IndexHeader } from '../../src/repo/index-file.js';

const packId = (n: number) => n.toString(16).padStart(32, '0');
const header = {} as IndexHeader;

test('the pack table lists the packs used, each once, in order of first use; ordinals follow, in place', () => {
  const packs = [packId(0), packId(1), packId(2), packId(1)]; // pack 0 unused, pack 1 listed twice
  const entries = IndexEntries.from([
    { kind: ENTRY_DATA, packOrdinal: 2, offset: 0, length: 60, plainLength: 10, id: Buffer.alloc(32, 1) },
    { kind: ENTRY_ZERO, packOrdinal: 0, offset: 0, length: 0, plainLength: 10, id: Buffer.alloc(32) },
    { kind: ENTRY_DATA, packOrdinal: 3, offset: 60, length: 60, plainLength: 10, id: Buffer.alloc(32, 2) },
    { kind: ENTRY_DATA, packOrdinal: 1, offset: 120, length: 60, plainLength: 10, id: Buffer.alloc(32, 3) },
  ]);
  const index: BackupIndex = { header, packs, entries };
  const out = compactPacks(index);
  assert.equal(out.packs, packs, 'the same array');
  assert.deepEqual(packs, [packId(2), packId(1)]);
  assert.deepEqual(
    entries.toArray().map((e) => (e.kind === ENTRY_DATA ? packs[e.packOrdinal] : null)),
    [packId(2), null, packId(1), packId(1)],
  );
});

test('a pack table of 300,000 packs is compacted (no spread of the table into one call)', () => {
  const n = 300_000;
  const packs = Array.from({ length: n }, (_, i) => packId(i));
  const entries = IndexEntries.alloc(n);
  for (let i = 0; i < n; i++) entries.setData(i, n - 1 - i, 0, 60, 10, Buffer.alloc(32, i % 256));
  compactPacks({ header, packs, entries });
  assert.equal(packs.length, n);
  assert.equal(packs[0], packId(n - 1));
  assert.equal(entries.packOrdinal(n - 1), n - 1);
  assert.equal(packs[entries.packOrdinal(12345)], packId(n - 1 - 12345));
});
