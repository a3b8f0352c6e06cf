/** The fake module: the shared driver suite, then what only the fake can show (raw protocols, persistence, accounting). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as abi from '../support/blksnap/kernel-abi.js';
import { Blksnap } from '../../src/blksnap/blksnap.js';
import { BlksnapFake } from '../support/blksnap/fake.js';
import { DeviceInSnapshotError, NotTrackedError } from '../../src/blksnap/errors.js';
import { blksnapDriverSuite } from './driver-suite.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { ROOT } from '../support/env.js';

const MiB = 1024 * 1024;
const ranges = (n: number) => abi.encodeBlockRanges([{ sector: 0, count: n }]);

blksnapDriverSuite('fake');

describe('blksnap fake', () => {
  let h: BlksnapHarness;
  let fake: BlksnapFake;
  const storageDev = { major: 254, minor: 0 };

  before(async () => {
    h = await blksnapHarness('fake', { portionSectors: 2048, chunkSize: 65536 });
    fake = h.fake!;
  });
  after(() => h?.cleanup());

  /** CREATE through raw ioctls, returning the id. */
  async function rawCreate(devs: abi.DevId[]): Promise<string> {
    const arg = abi.encodeSnapshotCreate(devs.length);
    await fake.ioctl(abi.IOCTL.SNAPSHOT_CREATE, arg, [{ at: abi.OFFSET.snapshotCreate.dev_id_array, buffer: abi.encodeDevIds(devs) }]);
    return abi.decodeSnapshotCreate(arg).id;
  }
  async function rawAppend(id: string, sectors: number): Promise<void> {
    await fake.ioctl(abi.IOCTL.SNAPSHOT_APPEND_STORAGE, abi.encodeAppendStorage(id, storageDev, 1), [{ at: abi.OFFSET.appendStorage.ranges, buffer: ranges(sectors) }]);
  }
  const rawTake = (id: string) => fake.ioctl(abi.IOCTL.SNAPSHOT_TAKE, abi.encodeSnapshotId(id), []);
  const rawDestroy = (id: string) => fake.ioctl(abi.IOCTL.SNAPSHOT_DESTROY, abi.encodeSnapshotId(id), []);

  test('COLLECT count protocol: null array → count; too small → ENODATA with the count; big enough → filled', async () => {
    const devs = [await h.blksnap.devIdOf(await h.loop(MiB)), await h.blksnap.devIdOf(await h.loop(MiB))];
    const ids = [await rawCreate([devs[0]!]), await rawCreate([devs[1]!])];
    const arg = abi.encodeCollect(0);
    assert.equal(await fake.ioctl(abi.IOCTL.SNAPSHOT_COLLECT, arg, []), 0);
    const n = abi.decodeCollectCount(arg);
    assert.ok(n >= 2);
    const small = abi.encodeCollect(1);
    await assert.rejects(fake.ioctl(abi.IOCTL.SNAPSHOT_COLLECT, small, [{ at: 8, buffer: Buffer.alloc(16) }]), { code: 'ENODATA' });
    assert.equal(abi.decodeCollectCount(small), n);
    const full = abi.encodeCollect(n);
    const array = Buffer.alloc(16 * n);
    await fake.ioctl(abi.IOCTL.SNAPSHOT_COLLECT, full, [{ at: 8, buffer: array }]);
    for (const id of ids) assert.ok(abi.decodeUuids(array, n).includes(id));
    const targ = abi.encodeCollect(0);
    await fake.ioctl(abi.IOCTL.TRACKER_COLLECT, targ, []);
    const tn = abi.decodeCollectCount(targ);
    const tsmall = abi.encodeCollect(tn - 1);
    await assert.rejects(fake.ioctl(abi.IOCTL.TRACKER_COLLECT, tsmall, [{ at: 8, buffer: Buffer.alloc(48 * tn) }]), { code: 'ENODATA' });
    assert.equal(abi.decodeCollectCount(tsmall), tn);
    for (const id of ids) await rawDestroy(id);
  });

  test('errno values: DESTROY unknown → ENODEV, TAKE/WAIT unknown → ESRCH, COLLECT_IMAGES before TAKE → ENODEV, bad number → ENOTTY', async () => {
    const ghost = 'ab'.repeat(16);
    await assert.rejects(rawDestroy(ghost), { code: 'ENODEV' });
    await assert.rejects(rawTake(ghost), { code: 'ESRCH' });
    await assert.rejects(fake.ioctl(abi.IOCTL.SNAPSHOT_WAIT_EVENT, abi.encodeWaitEvent(ghost, 1), []), { code: 'ESRCH' });
    const id = await rawCreate([await h.blksnap.devIdOf(await h.loop(MiB))]);
    await assert.rejects(fake.ioctl(abi.IOCTL.SNAPSHOT_COLLECT_IMAGES, abi.encodeCollectImages(id, 0), []), { code: 'ENODEV' });
    await assert.rejects(fake.ioctl(0x4008560c, Buffer.alloc(8), []), { code: 'ENOTTY' });
    await assert.rejects(fake.ioctl(abi.IOCTL.VERSION | 0x00100000, Buffer.alloc(8), []), { code: 'ENOTTY' }, 'the fake checks the whole number');
    await rawDestroy(id);
  });

  test('a device in a taken snapshot cannot be in another: EBUSY', async () => {
    const d = await h.loop(MiB);
    const dev = await h.blksnap.devIdOf(d);
    const id = await rawCreate([dev]);
    await rawAppend(id, 2048);
    await rawTake(id);
    await assert.rejects(h.blksnap.createSnapshot([dev]), DeviceInSnapshotError);
    await rawDestroy(id);
  });

  test('storage accounting: COW chunks are charged; low-free-space again under half a portion; events carry the portion', async () => {
    const d = await h.loop(8 * MiB, pattern(3));
    const dev = await h.blksnap.devIdOf(d);
    const s = await h.blksnap.createSnapshot([dev]);
    assert.equal((await s.waitEvent(1))?.kind, 'low-free-space');
    await s.appendStorage(storageDev, [{ sector: 0, count: 2048 }]); // 1 MiB = one portion
    await s.take();
    await h.write(d, 0, Buffer.alloc(100, 1)); // one chunk
    await h.write(d, 50, Buffer.alloc(100, 1)); // same chunk: no charge
    let st = await fake.state();
    assert.equal(st.snapshots[s.id]!.usedBytes, 65536);
    assert.equal(await s.waitEvent(1), null, 'free 960 KiB >= half a portion: no event');
    await h.write(d, 65536, Buffer.alloc(7 * 65536, 2)); // 7 more chunks: used 512 KiB, free 512 KiB
    assert.equal(await s.waitEvent(1), null);
    await h.write(d, 8 * 65536, Buffer.alloc(1, 2)); // free 448 KiB < 512 KiB
    const ev = await s.waitEvent(1);
    assert.ok(ev?.kind === 'low-free-space');
    assert.equal(ev.requestedSectors, 2048);
    await h.write(d, 9 * 65536, Buffer.alloc(1, 2));
    await h.write(d, 10 * 65536, Buffer.alloc(1, 2));
    assert.equal((await s.waitEvent(1))?.kind, 'low-free-space', 'asks again while under half a portion');
    assert.equal(await s.waitEvent(1), null, 'one request pending at a time');
    await s.appendStorage(storageDev, [{ sector: 4096, count: 2048 }]);
    st = await fake.state();
    assert.equal(st.snapshots[s.id]!.storageBytes, 2 * MiB);
    assert.equal(st.snapshots[s.id]!.usedBytes, 11 * 65536);
    const [img] = await s.images();
    const src = await fake.openImage(img!.image);
    const b = Buffer.alloc(10 * 65536);
    await src.read(b, b.length, 0);
    assert.ok(b.equals(patternBuffer(3, 0, b.length)));
    await s.destroy();
  });

  test('wrap at 256 through the ioctls: snap_number 255 then a new generation', async () => {
    const d = await h.loop(MiB);
    const dev = await h.blksnap.devIdOf(d);
    let gen = '';
    for (let i = 1; i <= 256; i++) {
      const id = await rawCreate([dev]);
      await rawAppend(id, 2048);
      await rawTake(id);
      const info = (await h.blksnap.tracker(dev))!;
      if (i === 1) gen = info.generationId;
      if (i < 255) assert.equal(info.generationId, gen);
      if (i === 255) {
        assert.equal(info.snapNumber, 255);
        assert.notEqual(info.generationId, gen, 'the switch to active 256 restarts with a new generation');
      }
      if (i === 256) assert.equal(info.snapNumber, 1);
      await rawDestroy(id);
    }
  });

  test('reset on size change: new generation at TAKE', async () => {
    const d = await h.loop(4 * MiB);
    const dev = await h.blksnap.devIdOf(d);
    const s1 = await h.blksnap.createSnapshot([dev]);
    await s1.appendStorage(storageDev, [{ sector: 0, count: 2048 }]);
    await s1.take();
    const before = (await h.blksnap.tracker(dev))!;
    await s1.destroy();
    await h.resize(d, 8 * MiB);
    const s2 = await h.blksnap.createSnapshot([dev]);
    await s2.appendStorage(storageDev, [{ sector: 0, count: 2048 }]);
    await s2.take();
    const afterInfo = (await h.blksnap.tracker(dev))!;
    assert.notEqual(afterInfo.generationId, before.generationId);
    assert.equal(afterInfo.deviceCapacity, 8 * MiB);
    assert.equal(afterInfo.blkCount, 128);
    assert.equal(afterInfo.snapNumber, 1);
    await s2.destroy();
  });

  test('module reload wipes trackers and snapshots; a new tracker gets a new generation', async () => {
    const d = await h.loop(MiB);
    const dev = await h.blksnap.devIdOf(d);
    const id = await rawCreate([dev]);
    const gen = (await h.blksnap.tracker(dev))!.generationId;
    await fake.reload();
    assert.equal(await h.blksnap.tracker(dev), undefined);
    assert.ok(!(await h.blksnap.snapshots()).includes(id));
    await assert.rejects(h.blksnap.readCbtMap(dev), NotTrackedError);
    const id2 = await rawCreate([dev]);
    assert.notEqual((await h.blksnap.tracker(dev))!.generationId, gen);
    await rawDestroy(id2);
  });

  test('regular files work as originals', async () => {
    const file = join(h.dir, 'plain.img');
    await writeFile(file, patternBuffer(4, 0, 2 * MiB));
    const dev = await h.blksnap.devIdOf(file);
    assert.equal(dev.major, 4000);
    assert.deepEqual(await h.blksnap.devIdOf(file), dev, 'stable id');
    const s = await h.blksnap.createSnapshot([dev]);
    await s.appendStorage(storageDev, [{ sector: 0, count: 2048 }]);
    await s.take();
    await fake.write(file, 4096, Buffer.alloc(4096, 9));
    const [img] = await s.images();
    const src = await fake.openImage(img!.image);
    const b = Buffer.alloc(8192);
    await src.read(b, 8192, 0);
    assert.ok(b.equals(patternBuffer(4, 0, 8192)));
    assert.equal(await src.read(b, 8192, 2 * MiB - 100), 100, 'short read at the end');
    await s.destroy();
    assert.equal((await h.blksnap.tracker(dev))!.snapNumber, 1);
  });

  test('state is shared across processes: a second instance on the same directory sees trackers, and writes by another process are copied-on-write', async () => {
    const d = await h.loop(4 * MiB, pattern(5));
    const dev = await h.blksnap.devIdOf(d);
    const other = new Blksnap(await BlksnapFake.open(h.fakeDir));
    const s = await other.createSnapshot([dev]);
    await s.appendStorage(storageDev, [{ sector: 0, count: 2048 }]);
    await s.take();
    const script = `import { BlksnapFake } from ${JSON.stringify(join(ROOT, 'dist/test/support/blksnap/fake.js'))};
      const f = await BlksnapFake.open(process.argv[1]);
      await f.write(process.argv[2], 65536, Buffer.alloc(65536, 0x77));`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script, h.fakeDir, d]);
    const [img] = await s.images();
    const src = await h.blksnap.driver.openImage(img!.image);
    const b = Buffer.alloc(65536);
    await src.read(b, 65536, 65536);
    assert.ok(b.equals(patternBuffer(5, 65536, 65536)), 'image has the old data written by another process');
    await s.destroy();
    const fresh = new Blksnap(await BlksnapFake.open(h.fakeDir));
    const s2 = await fresh.createSnapshot([dev]);
    await s2.appendStorage(storageDev, [{ sector: 0, count: 2048 }]);
    await s2.take();
    assert.deepEqual(Array.from(await fresh.readCbtMap(dev)).slice(0, 3), [0, 2, 0]);
    await s2.destroy();
  });
});
