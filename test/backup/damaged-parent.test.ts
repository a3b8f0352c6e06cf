/** Which chunks of a parent an incremental must read again because their pack is known damaged. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeSorted, parentInDamagedPacks } from '../../src/backup/device-backup.js';
import { IndexEntries, type BackupIndex, type IndexHeader } from '../../src/repo/index-file.js';
import { damageKey, parseDamageKey } from '../../src/repo/damage.js';

const packId = (n: number) => n.toString(16).padStart(32, '0');
const entries = IndexEntries.alloc(6);
entries.setData(0, 0, 100, 100, 10, Buffer.alloc(32, 1));
entries.setZero(1, 10);
entries.setData(2, 1, 200, 100, 10, Buffer.alloc(32, 2));
entries.setData(3, 0, 300, 100, 10, Buffer.alloc(32, 3));
entries.setZero(4, 10);
entries.setPatch(4, 1n, 1, 500, 60, 10, Buffer.alloc(32, 5)); // a patch over zeros, in pack 2
entries.setData(5, 1, 400, 100, 10, Buffer.alloc(32, 4));

const parent: BackupIndex = {
  header: {} as IndexHeader,
  packs: [packId(1), packId(2)],
  entries,
};

test('the regions with a base or patch in a damaged pack, ascending; zero regions and healthy packs never', () => {
  assert.deepEqual(parentInDamagedPacks(parent, new Set([packId(2)])), [2, 4, 5]);
  assert.deepEqual(parentInDamagedPacks(parent, new Set([packId(1), packId(2)])), [0, 2, 3, 4, 5]);
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
