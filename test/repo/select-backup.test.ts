/** `--backup ID|latest` and `--device NAME` (src/repo/select-backup.ts), the same for restore and verify. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectBackup } from '../../src/repo/select-backup.js';
import type { BackupRef } from '../../src/repo/repository.js';

const ref = (backupId: string, deviceKey: string): BackupRef => ({ backupId, deviceKey, key: `backups/${backupId}/${deviceKey}.idx`, size: 1 });
const refs = [
  ref('20261125T010000.000Z-aaaaaa', 'dev-sda'),
  ref('20261125T010000.000Z-aaaaaa', 'dev-sdb'),
  ref('20261126T010000.000Z-bbbbbb', 'dev-sda'),
  ref('20261127T010000.000Z-cccccc', 'dev-sdb'),
];
const ids = (rs: BackupRef[]) => rs.map((r) => `${r.backupId.slice(0, 8)} ${r.deviceKey}`);

test('latest: the newest backup, of the device when one is named', () => {
  assert.deepEqual(ids(selectBackup(refs, 'latest', undefined, 'R')), ['20261127 dev-sdb']);
  assert.deepEqual(ids(selectBackup(refs, 'latest', '/dev/sda', 'R')), ['20261126 dev-sda']);
  assert.deepEqual(ids(selectBackup(refs, 'latest', 'dev-sda', 'R')), ['20261126 dev-sda']);
});

test('an id or a prefix naming one backup: every device of it, or the one named', () => {
  assert.deepEqual(ids(selectBackup(refs, '20261125T010000.000Z-aaaaaa', undefined, 'R')), ['20261125 dev-sda', '20261125 dev-sdb']);
  assert.deepEqual(ids(selectBackup(refs, '20261125', undefined, 'R')), ['20261125 dev-sda', '20261125 dev-sdb']);
  assert.deepEqual(ids(selectBackup(refs, '20261125', '/dev/sdb', 'R')), ['20261125 dev-sdb']);
  assert.deepEqual(ids(selectBackup(refs, '20261126', '/dev/sda', 'R')), ['20261126 dev-sda']);
});

test('a prefix naming several backups is an error naming them', () => {
  assert.throws(() => selectBackup(refs, '2026112', undefined, 'R'), (e: Error & { exitCode: number }) => {
    assert.equal(e.exitCode, 20);
    assert.equal(e.message, 'backup id 2026112 is ambiguous: it begins 3 backups (20261125T010000.000Z-aaaaaa, 20261126T010000.000Z-bbbbbb, 20261127T010000.000Z-cccccc); give more of the id');
    return true;
  });
});

test('nothing named: no backup, no such device, an empty repository, an empty id', () => {
  assert.throws(() => selectBackup(refs, '1999', undefined, 'R'), /^BackupNotFoundError: no backup 1999 in the repository$/);
  assert.throws(() => selectBackup(refs, '20261126', '/dev/sdb', 'R'), /no backup 20261126 of device \/dev\/sdb in the repository/);
  assert.throws(() => selectBackup(refs, 'latest', '/dev/sdz', 'R'), /no backup of device \/dev\/sdz in the repository \(devices: dev-sda, dev-sdb\)/);
  assert.throws(() => selectBackup([], 'latest', undefined, '/srv/r'), /repository \/srv\/r has no backups/);
  assert.throws(() => selectBackup(refs, '', undefined, 'R'), /no backup {2}in the repository/);
});
