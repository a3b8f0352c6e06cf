/** Which chunks of a parent an incremental must read again because their pack is known damaged. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeSorted, parentInDamagedPacks } from '../../src/backup/device-backup.js';
import { ENTRY_DATA, ENTRY_ZERO, IndexEntries, type BackupIndex, type IndexHeader } from '../../src/repo/index-file.js';
import { damageKey, parseDamageKey } from '../../src/repo/damage.js';

const packId = (n: number) => n.toString(16).padStart(32, '0');
const data = (packOrdinal: number, n: number) => ({ kind: ENTRY_DATA, packOrdinal, offset: n * 100, length: 100, plainLength: 10, id: Buffer.alloc(32, n) }) as const;
const zero = { kind: ENTRY_ZERO, packOrdinal: 0, offset: 0, length: 0, plainLength: 10, id: Buffer.alloc(32) } as const;

const parent: BackupIndex = {
  header: {} as IndexHeader,
  packs: [packId(1), packId(2)],
  entries: IndexEntries.from([data(0, 1), zero, data(1, 2), data(0, 3), zero, data(1, 4)]),
};

test('the data entries in a damaged pack, ascending; zero entries and healthy packs never', () => {
  assert.deepEqual(parentInDamagedPacks(parent, new Set([packId(2)])), [2, 5]);
  assert.deepEqual(parentInDamagedPacks(parent, new Set([packId(1), packId(2)])), [0, 2, 3, 5]);
  assert.deepEqual(parentInDamagedPacks(parent, new Set([packId(9)])), []);
  assert.deepEqual(parentInDamagedPacks(parent, new Set()), []);
  assert.deepEqual(parentInDamagedPacks(null, new Set([packId(1)])), []);
});

test('the chunks to read: the CBT plan and the damaged ones merged, ascending, each once', () => {
  assert.deepEqual(mergeSorted([1, 4, 7], [0, 4, 8]), [0, 1, 4, 7, 8]);
  assert.deepEqual(mergeSorted([], [2, 3]), [2, 3]);
  assert.deepEqual(mergeSorted([2, 3], []), [2, 3]);
  assert.deepEqual(mergeSorted([], []), []);
});

test('damage record keys round-trip; other keys under damage/ are not records', () => {
  assert.deepEqual(parseDamageKey(damageKey(packId(7), 1048632)), { packId: packId(7), offset: 1048632 });
  assert.deepEqual(parseDamageKey(damageKey(packId(7), 0)), { packId: packId(7), offset: 0 });
  for (const k of [`damage/${packId(7)}/01`, `damage/${packId(7)}/x`, `damage/${packId(7)}`, `damage/abc/5`, `damage/${packId(7)}/5/6`]) {
    assert.equal(parseDamageKey(k), undefined, k);
  }
});
