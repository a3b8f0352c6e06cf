/**
 * Several devices in one blksnap snapshot (the real module in the kernel lab, else the fake): one
 * instant for all of them, each restored as it was then; then a CBT incremental of each.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sha256Of } from '../support/data.js';
import { pattern, patternBuffer } from '../support/blksnap-fake.js';
import { KIND, MiB, backup, noSnapshotsLeft, restoreHash, setup, snapshotsInModule, startPaused, writeBlocks, type Ctx } from './ctx.js';

describe(`several devices in one snapshot (${KIND})`, () => {
  let c: Ctx;
  let second: string;
  before(async () => {
    c = await setup(32 * MiB);
    second = await c.h.loop(48 * MiB, pattern(2));
  });
  after(() => c.h.cleanup());

  test('a full of two devices written during the backup restores both at the snapshot instant; then a CBT incr of both', async () => {
    const devs = [c.dev, second];
    const atSnapshot = await Promise.all(devs.map((d) => sha256Of(d)));
    const run = await startPaused(c, ['full', ...devs.flatMap((d) => ['--device', d]), '--json']);
    assert.equal((await snapshotsInModule(c)).length, 1, 'one snapshot holds both devices');
    await c.h.write(c.dev, 1 * MiB, patternBuffer(50, 1 * MiB, 1 * MiB));
    await c.h.write(second, 30 * MiB, patternBuffer(51, 30 * MiB, 1 * MiB));
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    const full = JSON.parse(r.stdout).devices as Array<{ device: string; backupId: string }>;
    assert.deepEqual(full.map((d) => d.device), devs);
    for (const [i, d] of full.entries()) assert.equal(await restoreHash(c, d.backupId, d.device), atSnapshot[i], `restore of ${d.device}`);
    await noSnapshotsLeft(c);

    await writeBlocks(c, second, [0, 47 * MiB], 9);
    const inc = await backup(c, 'incr', devs);
    for (const d of inc.devices) {
      assert.equal(d.method.mode, 'cbt', `${d.device}: ${JSON.stringify(d.method)}`);
      assert.equal(await restoreHash(c, d.backupId, d.device), await sha256Of(d.device), `restore of ${d.device}`);
    }
    // the first device: its 1 MiB written during the full; the second: that and two 4 KiB writes since
    assert.deepEqual(inc.devices.map((d) => d.method.cbtChangedBytes), [1 * MiB, 1 * MiB + 2 * 64 * 1024]);
  });
});
