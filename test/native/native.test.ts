/** The addon against a real loop device and real files. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { native, FiemapFlag } from '../../src/native/index.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { tempDir } from '../support/env.js';

const MiB = 1024 * 1024;

async function readRange(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  const { bytesRead } = await fh.read(b, 0, length, offset);
  assert.equal(bytesRead, length);
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('native addon on a loop device', () => {
  const tmp = tempDir('bkp-native-');
  let loop: Loop | undefined;
  let fh: FileHandle;

  before(async () => {
    const file = join(tmp.dir, 'disk.img');
    const data = Buffer.alloc(8 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(file, data);
    const h = await open(file, 'r+');
    await h.truncate(32 * MiB);
    await h.close();
    loop = attachLoop(file);
    fh = await open(loop.dev, 'r+');
  });

  after(async () => {
    await fh?.close().catch(() => undefined);
    loop?.detach();
    tmp.cleanup();
  });

  test('blockDeviceSize and sectorSizes', () => {
    assert.equal(native().blockDeviceSize(fh.fd), 32 * MiB);
    const s = native().sectorSizes(fh.fd);
    assert.equal(s.logical, 512);
    assert.ok(s.physical >= 512 && s.physical % 512 === 0, `physical ${s.physical}`);
  });

  test('zeroOut zeroes exactly the range', async () => {
    const before = await readRange(fh, 1 * MiB, 1 * MiB);
    assert.notEqual(sha(before.subarray(4096, 4096 + 65536)), sha(Buffer.alloc(65536)));
    await native().zeroOut(fh.fd, 1 * MiB + 4096, 65536);
    const afterBuf = await readRange(fh, 1 * MiB, 1 * MiB);
    assert.equal(sha(afterBuf.subarray(4096, 4096 + 65536)), sha(Buffer.alloc(65536)));
    assert.equal(sha(afterBuf.subarray(0, 4096)), sha(before.subarray(0, 4096)));
    assert.equal(sha(afterBuf.subarray(4096 + 65536)), sha(before.subarray(4096 + 65536)));
  });

  test('discard makes the range read as zeros on a loop device', async () => {
    const before = await readRange(fh, 4 * MiB, 1 * MiB);
    assert.notEqual(sha(before), sha(Buffer.alloc(MiB)));
    await native().discard(fh.fd, 4 * MiB, 1 * MiB);
    assert.equal(sha(await readRange(fh, 4 * MiB, MiB)), sha(Buffer.alloc(MiB)));
    assert.notEqual(sha(await readRange(fh, 5 * MiB, 4096)), sha(Buffer.alloc(4096)), 'data after the range is kept');
  });

  test('errors carry code, errno and syscall like Node fs errors', async () => {
    const f = await open(join(tmp.dir, 'plain'), 'w');
    try {
      assert.throws(() => native().blockDeviceSize(f.fd), (e: NodeJS.ErrnoException) => e.code === 'ENOTTY' && e.errno === -25 && e.syscall === 'ioctl' && /^ENOTTY: /.test(e.message));
      await assert.rejects(native().zeroOut(f.fd, 0, 512), (e: NodeJS.ErrnoException) => e.code === 'ENOTTY');
      await assert.rejects(native().ioctl(f.fd, 0x40085600, Buffer.alloc(8), []), (e: NodeJS.ErrnoException) => e.code === 'ENOTTY' && e.syscall === 'ioctl');
      await assert.rejects(native().fallocate(9999, 0, 0, 4096), (e: NodeJS.ErrnoException) => e.code === 'EBADF' && e.syscall === 'fallocate');
    } finally {
      await f.close();
    }
  });

  test('argument checks throw TypeError/RangeError', () => {
    assert.throws(() => native().blockDeviceSize('x' as unknown as number), TypeError);
    assert.throws(() => native().zeroOut(fh.fd, -1, 512), RangeError);
    assert.throws(() => native().ioctl(fh.fd, 1, Buffer.alloc(8), [{ at: 4, buffer: Buffer.alloc(1) }]), RangeError);
    assert.throws(() => native().ioctl(fh.fd, 1, Buffer.alloc(8), [{ at: 8, buffer: Buffer.alloc(1) }]), RangeError);
  });
});

describe('native addon on files', () => {
  const tmp = tempDir('bkp-native-files-');
  after(() => tmp.cleanup());

  test('fallocate allocates; punch hole frees blocks and keeps the size', async () => {
    const path = join(tmp.dir, 'alloc');
    const f = await open(path, 'w+');
    try {
      await native().fallocate(f.fd, 0, 0, 4 * MiB);
      let st = await stat(path);
      assert.equal(st.size, 4 * MiB);
      assert.ok(st.blocks * 512 >= 4 * MiB, `allocated ${st.blocks * 512}`);
      const blocksBefore = st.blocks;
      await native().fallocate(f.fd, native().FALLOC_FL_PUNCH_HOLE | native().FALLOC_FL_KEEP_SIZE, MiB, MiB);
      st = await stat(path);
      assert.equal(st.size, 4 * MiB);
      assert.equal(blocksBefore - st.blocks, (MiB / 512), 'exactly 1 MiB freed');
      const extents = await native().fiemap(f.fd);
      assert.equal(extents.length >= 2, true);
      assert.ok(!extents.some((e) => e.logical < 2 * MiB && e.logical + e.length > MiB), 'no extent inside the hole');
    } finally {
      await f.close();
    }
  });

  test('fiemap lists every extent of a fragmented file up to FIEMAP_EXTENT_LAST', async () => {
    const path = join(tmp.dir, 'frag');
    const f = await open(path, 'w+');
    try {
      // 300 separate 4 KiB pieces with holes between: more extents than one FIEMAP batch (256).
      const block = Buffer.alloc(4096, 0xab);
      for (let i = 0; i < 300; i++) await f.write(block, 0, 4096, i * 8192);
      await f.sync();
      const extents = await native().fiemap(f.fd);
      assert.equal(extents.length, 300);
      extents.forEach((e, i) => {
        assert.equal(e.logical, i * 8192);
        assert.equal(e.length, 4096);
        assert.ok(e.physical > 0);
      });
      assert.ok(extents[299]!.flags & FiemapFlag.LAST);
      assert.ok(!(extents[0]!.flags & FiemapFlag.LAST));
    } finally {
      await f.close();
    }
  });

  test('fiemap of an empty file is empty; fallocated extents are UNWRITTEN', async () => {
    const f = await open(join(tmp.dir, 'empty'), 'w+');
    try {
      assert.deepEqual(await native().fiemap(f.fd), []);
      await native().fallocate(f.fd, 0, 0, MiB);
      const ex = await native().fiemap(f.fd);
      assert.ok(ex.length >= 1);
      assert.ok(ex.every((e) => e.flags & FiemapFlag.UNWRITTEN));
      assert.equal(ex.reduce((n, e) => n + e.length, 0), MiB);
    } finally {
      await f.close();
    }
  });
});
