/** SnapshotSession against the fake module, originals on loop devices. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DeviceInSnapshotError, SnapshotOverflowError } from '../../src/blksnap/errors.js';
import { SnapshotSession } from '../../src/blksnap/session.js';
import { SnapshotFailedError } from '../../src/errors.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';

const MiB = 1024 * 1024;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SnapshotSession (fake)', () => {
  let h: BlksnapHarness;
  let diffDir: string;
  let n = 0;

  before(async () => {
    // portion 1 MiB, COW chunks of 64 KiB
    h = await blksnapHarness('fake', { portionSectors: 2048, chunkSize: 65536 });
  });
  after(() => h?.cleanup());

  async function newDiffDir(): Promise<string> {
    diffDir = join(h.dir, `diff-${n++}`);
    await mkdir(diffDir);
    return diffDir;
  }
  const diffFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.startsWith('bkp-diff-'));

  test('image shows snapshot-time bytes while the original is written; storage grows on events; close cleans up', async () => {
    const a = await h.loop(16 * MiB, pattern(11));
    const b = await h.loop(8 * MiB, pattern(12));
    const dir = await newDiffDir();
    const warnings: string[] = [];
    const s = await SnapshotSession.start({ blksnap: h.blksnap, devices: [a, b], diffStorageDir: dir, diffStorageLimit: 8 * MiB, eventTimeout: 5, onWarning: (w) => warnings.push(w) });
    try {
      assert.equal(s.devices.length, 2);
      assert.equal(s.cbt(a).snapNumber, 1);
      assert.equal(s.cbt(a).blkCount, 256);
      assert.equal(s.storage.allocated, MiB, 'first portion = the size the module asked for');
      assert.equal((await diffFiles(dir)).length, 1);
      assert.ok((await diffFiles(dir))[0]!.includes(s.snapshot.id));

      // 24 chunks (1.5 MiB) of COW: more than the first portion → low-space events → growth
      for (let i = 0; i < 24; i++) await h.write(a, i * 65536 * 2, Buffer.alloc(4096, 0xaa));
      await h.write(b, 0, Buffer.alloc(8 * 65536, 0xbb));
      await until(() => s.storage.allocated >= 3 * MiB);
      await s.settle();
      assert.equal(s.corrupted(a), undefined);
      await s.assertIntact(a);
      await s.assertIntact(b);

      for (const [dev, seed, size] of [[a, 11, 16 * MiB], [b, 12, 8 * MiB]] as const) {
        const src = s.source(dev);
        assert.equal(src.size, size);
        assert.equal(src.path, dev);
        const buf = Buffer.alloc(size);
        for (let off = 0; off < size; off += MiB) assert.equal(await src.read(buf.subarray(off), MiB, off), MiB);
        assert.ok(buf.equals(patternBuffer(seed, 0, size)), `${dev}: whole image equals the snapshot-time content`);
      }
      const map = await s.readCbtMap(a);
      assert.equal(map.length, 256);
      assert.deepEqual(warnings, []);
    } finally {
      await s.close();
    }
    await s.close();
    assert.ok(!(await h.blksnap.snapshots()).includes(s.snapshot.id), 'snapshot destroyed');
    assert.deepEqual(await diffFiles(dir), [], 'difference files removed');
    const t = await h.blksnap.tracker(s.devices[0]!.dev);
    assert.equal(t?.snapNumber, 1, 'tracker kept for the next incremental');
  });

  test('overflow: corrupted recorded, reads and assertIntact throw SnapshotOverflowError, close still cleans up', async () => {
    const a = await h.loop(8 * MiB, pattern(13));
    const dir = await newDiffDir();
    const warnings: string[] = [];
    const s = await SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: MiB, eventTimeout: 5, onWarning: (w) => warnings.push(w) });
    try {
      await h.write(a, 0, Buffer.alloc(4 * MiB, 1));
      await s.settle();
      assert.equal(s.corrupted(a), 28);
      assert.equal(s.storageExhausted, true);
      await assert.rejects(s.assertIntact(a), SnapshotOverflowError);
      await assert.rejects(s.source(a).read(Buffer.alloc(4096), 4096, 0), SnapshotOverflowError);
      assert.ok(warnings.some((w) => /overflowed/.test(w)));
      assert.ok(warnings.some((w) => /limit/.test(w)));
    } finally {
      await s.close();
    }
    assert.ok(!(await h.blksnap.snapshots()).includes(s.snapshot.id));
    assert.deepEqual(await diffFiles(dir), []);
  });

  test('a read after an overflow fails with SnapshotOverflowError, not a bare EIO', async () => {
    const a = await h.loop(4 * MiB, pattern(14));
    const dir = await newDiffDir();
    const s = await SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: MiB, eventTimeout: 2000 });
    try {
      await h.write(a, 0, Buffer.alloc(2 * MiB, 1));
      await assert.rejects(s.source(a).read(Buffer.alloc(4096), 4096, 0), SnapshotOverflowError);
    } finally {
      await s.close();
    }
  });

  test('refuses a device already in another snapshot (taken or being set up), creating nothing', async () => {
    const a = await h.loop(4 * MiB);
    const dev = await h.blksnap.devIdOf(a);
    const other = await h.blksnap.createSnapshot([dev]);
    const dir = await newDiffDir();
    const count = (await h.blksnap.snapshots()).length;
    await assert.rejects(SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: 4 * MiB }), DeviceInSnapshotError);
    await other.appendStorage({ major: 254, minor: 0 }, [{ sector: 0, count: 2048 }]);
    await other.take();
    await assert.rejects(SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: 4 * MiB }), DeviceInSnapshotError);
    assert.equal((await h.blksnap.snapshots()).length, count);
    assert.ok((await h.blksnap.snapshots()).includes(other.id), 'the other snapshot is untouched');
    await other.destroy();
    assert.deepEqual(await diffFiles(dir), []);
  });

  test('a failed start destroys the snapshot and removes its files', async () => {
    const a = await h.loop(4 * MiB);
    const dir = await newDiffDir();
    const before = await h.blksnap.snapshots();
    await assert.rejects(SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: 0 }), SnapshotFailedError);
    assert.deepEqual((await h.blksnap.snapshots()).sort(), before.sort());
    assert.deepEqual(await diffFiles(dir), []);
  });

  test('close during reads and from several callers at once is safe', async () => {
    const a = await h.loop(4 * MiB, pattern(15));
    const dir = await newDiffDir();
    const s = await SnapshotSession.start({ blksnap: h.blksnap, devices: [a], diffStorageDir: dir, diffStorageLimit: 4 * MiB, eventTimeout: 5 });
    const reading = s.source(a).read(Buffer.alloc(MiB), MiB, 0).catch(() => 0);
    await Promise.all([s.close(), s.close(), s.close()]);
    await reading;
    assert.ok(!(await h.blksnap.snapshots()).includes(s.snapshot.id));
    assert.deepEqual(await diffFiles(dir), []);
  });
});
