/**
 * The blksnap driver suite: what shared/docs/blksnap.md says the module does, checked through the
 * typed API. Runs against the fake always (fake.test.ts) and against the real module when
 * BKP_TEST_BLKSNAP_REAL=1 (real.test.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { changedBlocks } from '../../src/blksnap/cbt.js';
import type { Snapshot } from '../../src/blksnap/blksnap.js';
import { DiffStorage } from '../../src/blksnap/diff-storage.js';
import { CbtMapUnavailableError, NotTrackedError, UnknownSnapshotError } from '../../src/blksnap/errors.js';
import { SnapshotFailedError } from '../../src/errors.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';

const MiB = 1024 * 1024;

async function readDevice(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, offset);
    return b;
  } finally {
    await fh.close();
  }
}

export function blksnapDriverSuite(kind: 'fake' | 'real'): void {
  describe(`blksnap driver suite (${kind})`, () => {
    let h: BlksnapHarness;
    let storage: DiffStorage;
    const live: Snapshot[] = [];

    before(async () => {
      h = await blksnapHarness(kind, { portionSectors: 8192 });
      const dir = join(h.dir, 'diff');
      await import('node:fs/promises').then((fs) => fs.mkdir(dir));
      storage = await DiffStorage.open({ dir, limit: 1024 * MiB });
    });
    after(async () => {
      for (const s of live) await s.destroy().catch(() => undefined);
      await storage?.remove();
      await h?.cleanup();
    });

    async function create(devs: string[]): Promise<Snapshot> {
      const s = await h.blksnap.createSnapshot(await Promise.all(devs.map((d) => h.blksnap.devIdOf(d))));
      live.push(s);
      return s;
    }
    async function append(s: Snapshot, bytes: number): Promise<void> {
      const a = await storage.allocate(bytes);
      assert.ok(a);
      await s.appendStorage(storage.device.dev, a.ranges);
    }

    test('version', async () => {
      const v = await h.blksnap.version();
      assert.equal(v.major, 1);
      assert.equal(v.build, 0);
    });

    test('an untracked device: no tracker, READ_CBT_MAP is NotTrackedError', async () => {
      const dev = await h.blksnap.devIdOf(await h.loop(64 * MiB));
      assert.equal(await h.blksnap.tracker(dev), undefined);
      await assert.rejects(h.blksnap.readCbtMap(dev), NotTrackedError);
    });

    test('CREATE makes a tracker and asks for storage at once; TAKE without storage is EFAULT and drops the snapshot', async () => {
      const d = await h.loop(64 * MiB);
      const s = await create([d]);
      const info = await h.blksnap.tracker(await h.blksnap.devIdOf(d));
      assert.ok(info);
      assert.equal(info.snapNumber, 0);
      const ev = await s.waitEvent(250);
      assert.ok(ev && ev.kind === 'low-free-space', 'low free space right after create');
      if (kind === 'fake') assert.equal(ev.requestedSectors, 8192);
      assert.ok((await h.blksnap.snapshots()).includes(s.id));
      await assert.rejects(s.images(), (e: unknown) => e instanceof SnapshotFailedError && (e.cause as NodeJS.ErrnoException).code === 'ENODEV');
      await assert.rejects(s.take(), (e: unknown) => e instanceof SnapshotFailedError && (e.cause as NodeJS.ErrnoException).code === 'EFAULT');
      assert.ok(!(await h.blksnap.snapshots()).includes(s.id));
      assert.equal(await s.destroy(), false);
    });

    test('full cycle: image keeps snapshot-time data; CBT numbers, generation and changed blocks as the doc walks through', async () => {
      const d = await h.loop(64 * MiB, pattern(1));
      const dev = await h.blksnap.devIdOf(d);
      const s1 = await create([d]);
      await append(s1, 16 * MiB);
      await s1.take();
      const [img] = await s1.images();
      assert.ok(img);
      assert.deepEqual(img.orig, dev);
      const info1 = (await h.blksnap.tracker(dev))!;
      assert.equal(info1.snapNumber, 1);
      assert.equal(info1.blkSize, 65536);
      assert.equal(info1.blkCount, 1024);
      assert.equal(info1.deviceCapacity, 64 * MiB);
      const map1 = await h.blksnap.readCbtMap(dev);
      assert.equal(map1.length, 1024);
      assert.ok(map1.every((x) => x === 0), 'writes before CREATE are not tracked');

      await h.write(d, 3 * MiB, Buffer.alloc(4096, 0xee));
      await h.write(d, 40 * MiB + 512, Buffer.alloc(512, 0xdd));
      const source = await h.blksnap.driver.openImage(img.image);
      try {
        assert.equal(source.size, 64 * MiB);
        const got = Buffer.alloc(8192);
        assert.equal(await source.read(got, 8192, 3 * MiB - 4096), 8192);
        assert.ok(got.equals(patternBuffer(1, 3 * MiB - 4096, 8192)), 'image shows the snapshot-time bytes');
        assert.equal(await source.read(got, 4096, 40 * MiB), 4096);
        assert.ok(got.subarray(0, 4096).equals(patternBuffer(1, 40 * MiB, 4096)));
      } finally {
        await source.close();
      }
      assert.ok((await readDevice(d, 3 * MiB, 4096)).equals(Buffer.alloc(4096, 0xee)), 'the original has the new data');

      assert.equal(await s1.destroy(), true);
      assert.equal(await s1.destroy(), false, 'destroy is idempotent');
      await assert.rejects(h.blksnap.readCbtMap(dev), CbtMapUnavailableError);
      const info1b = (await h.blksnap.tracker(dev))!;
      assert.equal(info1b.generationId, info1.generationId, 'trackers outlive DESTROY');

      await h.write(d, 100 * 65536, Buffer.alloc(4096, 1));
      const s2 = await create([d]);
      await append(s2, 16 * MiB);
      await s2.take();
      const info2 = (await h.blksnap.tracker(dev))!;
      assert.equal(info2.snapNumber, 2);
      assert.equal(info2.generationId, info1.generationId);
      const map2 = await h.blksnap.readCbtMap(dev);
      assert.deepEqual(changedBlocks(map2, 1), [48, 100, 640], "exactly the blocks written since the first take");
      assert.equal(map2[48], 2);

      await h.blksnap.markDirty(dev, [{ sector: 10 * 128, count: 1 }]);
      const map3 = await h.blksnap.readCbtMap(dev);
      assert.equal(map3[10], 2, 'mark dirty sets the read map to the previous number');
      assert.equal(await s2.destroy(), true);
    });

    test('WAIT_EVENT with nothing to report resolves null; unknown ids are UnknownSnapshotError', async () => {
      const d = await h.loop(64 * MiB);
      const s = await create([d]);
      assert.equal((await s.waitEvent(250))?.kind, 'low-free-space');
      const t0 = Date.now();
      assert.equal(await s.waitEvent(25), null);
      assert.ok(Date.now() - t0 < 5000);
      await s.destroy();
      const ghost = h.blksnap.snapshot('0123456789abcdef0123456789abcdef');
      await assert.rejects(ghost.take(), UnknownSnapshotError);
      await assert.rejects(ghost.waitEvent(1), UnknownSnapshotError);
      await assert.rejects(ghost.appendStorage(storage.device.dev, [{ sector: 0, count: 8 }]), UnknownSnapshotError);
      assert.equal(await ghost.destroy(), false);
    });

    test('a second CREATE with a device of a not-yet-taken snapshot is accepted and the first is gone', async () => {
      const d = await h.loop(64 * MiB);
      const first = await create([d]);
      const second = await create([d]);
      assert.notEqual(first.id, second.id);
      await assert.rejects(first.take(), UnknownSnapshotError);
      assert.ok(!(await h.blksnap.snapshots()).includes(first.id));
      await second.destroy();
    });

    test('collections list several trackers and snapshots', async () => {
      const a = await h.loop(64 * MiB);
      const b = await h.loop(128 * MiB);
      const s = await create([a, b]);
      await append(s, 16 * MiB);
      await s.take();
      const images = await s.images();
      assert.equal(images.length, 2);
      const trackers = await h.blksnap.trackers();
      const tb = trackers.find((t) => t.dev.minor === images[1]!.orig.minor && t.dev.major === images[1]!.orig.major);
      assert.equal(tb?.blkCount, 2048);
      assert.ok((await h.blksnap.snapshots()).includes(s.id));
      await s.destroy();
    });

    test('overflow: a corrupted event for the device (err 28), then image reads fail with EIO; DESTROY still works', async () => {
      const d = await h.loop(64 * MiB, pattern(2));
      const dev = await h.blksnap.devIdOf(d);
      const s = await create([d]);
      await append(s, 1 * MiB);
      await s.take();
      const [img] = await s.images();
      for (let off = 0; off < 16 * MiB; off += MiB) await h.write(d, off, Buffer.alloc(MiB, 0x5a));
      let corrupted;
      for (let i = 0; i < 20 && !corrupted; i++) {
        const ev = await s.waitEvent(25);
        if (ev?.kind === 'corrupted') corrupted = ev;
      }
      assert.ok(corrupted, 'corrupted event');
      assert.deepEqual(corrupted.dev, dev);
      assert.equal(corrupted.errCode, 28);
      const source = await h.blksnap.driver.openImage(img!.image);
      try {
        await assert.rejects(source.read(Buffer.alloc(4096), 4096, 0), (e: NodeJS.ErrnoException) => e.code === 'EIO');
      } finally {
        await source.close();
      }
      assert.equal(await s.destroy(), true);
    });

    test('removeTracker drops the history', async () => {
      const d = await h.loop(64 * MiB);
      const dev = await h.blksnap.devIdOf(d);
      const s = await create([d]);
      await s.destroy();
      assert.ok(await h.blksnap.tracker(dev));
      await h.blksnap.removeTracker(dev);
      assert.equal(await h.blksnap.tracker(dev), undefined);
      await assert.rejects(h.blksnap.readCbtMap(dev), NotTrackedError);
    });
  });
}
