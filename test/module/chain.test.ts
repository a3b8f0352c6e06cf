/**
 * When the blksnap module breaks the CBT chain (the real one in the kernel lab, else the fake):
 * a module reload drops the trackers, and the snapshot number wraps at 255. Either way the next
 * incremental reads everything, says why, stores only what changed and restores byte-equal; then
 * CBT incrementals resume (after the wrap, one take later: number 1 does not follow 255).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { sha256Of } from '../support/data.js';
import { DiffStorage } from '../../src/blksnap/diff-storage.js';
import { KIND, MiB, backup, restoreHash, setup, writeBlocks, type Ctx } from './ctx.js';

describe(`the CBT chain through the blksnap module (${KIND})`, () => {
  let c: Ctx;
  before(async () => {
    c = await setup(32 * MiB);
    await backup(c, 'full');
  });
  after(() => c.h.cleanup());

  async function fallsBack(why: RegExp, seed: number) {
    await writeBlocks(c, c.dev, [3 * MiB, 17 * MiB + 8192], seed);
    const inc = await backup(c, 'incr');
    const d = inc.devices[0]!;
    assert.equal(d.method.mode, 'digest', JSON.stringify(d.method));
    assert.match(d.method.reason!, why);
    assert.equal(d.stats.bytesRead, c.size, 'a fallback reads the whole device');
    assert.equal(d.stats.chunksNew, 2, 'and stores only the two chunks that changed');
    assert.equal(await restoreHash(c, d.backupId), await sha256Of(c.dev));
  }

  async function recovers(seed: number) {
    await writeBlocks(c, c.dev, [9 * MiB], seed);
    const next = await backup(c, 'incr');
    assert.equal(next.devices[0]!.method.mode, 'cbt', 'the chain is whole again after the fallback');
    assert.equal(next.devices[0]!.method.cbtChangedBytes, 64 * 1024);
    assert.equal(await restoreHash(c, next.devices[0]!.backupId), await sha256Of(c.dev));
  }

  test('module reload: the next incr reads everything, says the generation changed, restores byte-equal', async () => {
    const gen = (await c.h.blksnap.tracker(await c.h.blksnap.devIdOf(c.dev)))!.generationId;
    await c.h.reloadModule();
    assert.equal(await c.h.blksnap.tracker(await c.h.blksnap.devIdOf(c.dev)), undefined, 'the reload dropped the tracker');
    await fallsBack(/generation changed/, 10);
    await recovers(11);
    assert.notEqual((await c.h.blksnap.tracker(await c.h.blksnap.devIdOf(c.dev)))!.generationId, gen);
  });

  test('the snapshot number wraps at 255: new generation, the next incr reads everything and restores byte-equal', async () => {
    const dev = await c.h.blksnap.devIdOf(c.dev);
    const start = (await c.h.blksnap.tracker(dev))!;
    // take and destroy snapshots in-process (with a little real difference storage) up to number 254
    const dir = path.join(c.h.dir, 'wrap');
    await fs.mkdir(dir);
    const storage = await DiffStorage.open({ dir, limit: 8 * MiB });
    const a = (await storage.allocate(4 * MiB))!;
    try {
      for (let n = start.snapNumber; n < 254; n++) {
        const s = await c.h.blksnap.createSnapshot([dev]);
        await s.appendStorage(storage.device.dev, a.ranges);
        await s.take();
        await s.destroy();
      }
    } finally {
      await storage.remove();
    }
    const before = (await c.h.blksnap.tracker(dev))!;
    assert.equal(before.snapNumber, 254);
    assert.equal(before.generationId, start.generationId, 'still the same history at 254');
    // bkp's take is number 255: the module zeroes its map and starts a new generation
    await fallsBack(/generation changed/, 20);
    const wrapped = (await c.h.blksnap.tracker(dev))!;
    assert.equal(wrapped.snapNumber, 255);
    assert.notEqual(wrapped.generationId, start.generationId, 'the wrap started a new generation');
    // the next take is number 1 of that generation: not after 255, so bkp reads everything once more
    await fallsBack(/wrapped at 255/, 30);
    await recovers(40);
  });
});
