/** Difference storage on a real ext4 filesystem on a loop device. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, readdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { devIdOf } from '../../src/blksnap/devices.js';
import { DiffStorage, extentsToRanges, removeStaleDiffFiles } from '../../src/blksnap/diff-storage.js';
import { DiffStorageUnsupportedError } from '../../src/blksnap/errors.js';
import { FiemapFlag } from '../../src/native/index.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { sh, tempDir } from '../support/env.js';
import { patternBuffer } from '../support/blksnap-fake.js';

const MiB = 1024 * 1024;

describe('extentsToRanges', () => {
  test('merges adjacent extents into 512-byte sector ranges and clips to the size', () => {
    const r = extentsToRanges(
      [
        { logical: 0, physical: 4096, length: 8192, flags: FiemapFlag.UNWRITTEN },
        { logical: 8192, physical: 12288, length: 4096, flags: 0 },
        { logical: 12288, physical: 1 << 20, length: 8192, flags: FiemapFlag.LAST },
      ],
      16384,
      'f',
    );
    assert.deepEqual(r, [
      { sector: 8, count: 24 },
      { sector: 2048, count: 8 },
    ]);
  });
  test('refuses holes, short files and extents that are not plain sectors', () => {
    assert.throws(() => extentsToRanges([{ logical: 4096, physical: 0, length: 4096, flags: 0 }], 8192, 'f'), DiffStorageUnsupportedError);
    assert.throws(() => extentsToRanges([{ logical: 0, physical: 0, length: 4096, flags: 0 }], 8192, 'f'), DiffStorageUnsupportedError);
    for (const flag of [FiemapFlag.ENCODED, FiemapFlag.DATA_INLINE, FiemapFlag.UNKNOWN, FiemapFlag.NOT_ALIGNED, FiemapFlag.SHARED, FiemapFlag.DELALLOC]) {
      assert.throws(() => extentsToRanges([{ logical: 0, physical: 0, length: 4096, flags: flag }], 4096, 'f'), DiffStorageUnsupportedError, `flag ${flag}`);
    }
    assert.throws(() => extentsToRanges([{ logical: 0, physical: 100, length: 4096, flags: 0 }], 4096, 'f'), DiffStorageUnsupportedError);
  });
});

describe('DiffStorage on ext4', () => {
  const tmp = tempDir('bkp-diffstorage-');
  const mnt = join(tmp.dir, 'mnt');
  let loop: Loop | undefined;
  let mounted = false;

  before(async () => {
    const img = join(tmp.dir, 'fs.img');
    await (await open(img, 'w')).close();
    await truncate(img, 128 * MiB);
    loop = attachLoop(img);
    sh('mkfs.ext4', ['-q', '-F', loop.dev]);
    await mkdir(mnt);
    sh('mount', [loop.dev, mnt]);
    mounted = true;
  });
  after(() => {
    try {
      if (mounted) sh('umount', [mnt]);
    } finally {
      loop?.detach();
      tmp.cleanup();
    }
  });

  test('ranges point at the file\'s real sectors on the filesystem\'s device', async () => {
    const ds = await DiffStorage.open({ dir: mnt, limit: 16 * MiB, tag: 'test' });
    assert.deepEqual(ds.device.dev, await devIdOf(loop!.dev));
    assert.equal(ds.device.path, loop!.dev);
    assert.deepEqual(ds.warnings, []);
    const a = await ds.allocate(3 * MiB - 100);
    assert.ok(a);
    assert.equal(a.bytes, 3 * MiB);
    assert.equal(a.ranges.reduce((n, r) => n + r.count, 0) * 512, 3 * MiB);

    const data = patternBuffer(7, 0, 3 * MiB);
    const fh = await open(a.path, 'r+');
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    await fh.close();
    sh('blockdev', ['--flushbufs', loop!.dev]);
    const dev = await open(loop!.dev, 'r');
    try {
      const got: Buffer[] = [];
      for (const r of a.ranges) {
        const b = Buffer.alloc(r.count * 512);
        await dev.read(b, 0, b.length, r.sector * 512);
        got.push(b);
      }
      assert.ok(Buffer.concat(got).equals(data), 'the device at the ranges holds what was written through the file');
    } finally {
      await dev.close();
    }
    await ds.remove();
    assert.deepEqual((await readdir(mnt)).filter((n) => n.startsWith('bkp-diff-')), []);
  });

  test('allocation stops at the limit; remove() deletes every file', async () => {
    const ds = await DiffStorage.open({ dir: mnt, limit: 5 * MiB, tag: 'lim' });
    assert.equal((await ds.allocate(2 * MiB))?.bytes, 2 * MiB);
    assert.equal((await ds.allocate(10 * MiB))?.bytes, 3 * MiB, 'clipped to what the limit leaves');
    assert.equal(await ds.allocate(MiB), null);
    assert.equal(ds.allocated, 5 * MiB);
    assert.equal((await readdir(mnt)).filter((n) => n.startsWith('bkp-diff-lim-')).length, 2);
    await ds.remove();
    await ds.remove();
    assert.deepEqual((await readdir(mnt)).filter((n) => n.startsWith('bkp-diff-')), []);
  });

  test('warns when the directory is on a device being backed up', async () => {
    const ds = await DiffStorage.open({ dir: mnt, limit: MiB, backedUp: [await devIdOf(loop!.dev)] });
    assert.equal(ds.warnings.length, 1);
    assert.match(ds.warnings[0]!, /tracked/);
  });

  test('stale files of snapshots that no longer exist are removed', async () => {
    const a = await DiffStorage.open({ dir: mnt, limit: 2 * MiB, tag: 'aaaa' });
    const b = await DiffStorage.open({ dir: mnt, limit: 2 * MiB, tag: 'bbbb' });
    await a.allocate(MiB);
    await b.allocate(MiB);
    const removed = await removeStaleDiffFiles(mnt, ['bbbb']);
    assert.deepEqual(removed, [join(mnt, 'bkp-diff-aaaa-0')]);
    await b.remove();
  });

  test('refuses a filesystem without a block device (tmpfs)', async () => {
    const shm = join('/dev/shm', `bkp-test-${process.pid}`);
    await mkdir(shm, { recursive: true });
    try {
      await assert.rejects(DiffStorage.open({ dir: shm, limit: MiB }), DiffStorageUnsupportedError);
    } finally {
      sh('rm', ['-rf', shm]);
    }
  });
});
