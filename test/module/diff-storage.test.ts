/**
 * Difference storage through the blksnap module (the real one in the kernel lab, else the fake):
 * with the module's minimum portion lowered (its diff_storage_minimum parameter), writes during a
 * backup make the snapshot ask for more storage, which bkp appends; past --diff-storage-limit the
 * snapshot overflows and the backup fails cleanly.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { sha256Of } from '../support/data.js';
import { patternBuffer } from '../support/blksnap-fake.js';
import { ExitCode } from '../../src/errors.js';
import { KIND, MiB, listBackups, noSnapshotsLeft, restoreHash, setup, sleep, startPaused, type Ctx } from './ctx.js';

const PORTION = 4 * MiB;

describe(`difference storage through the blksnap module (${KIND})`, () => {
  let c: Ctx;
  let portionBefore: number;
  before(async () => {
    c = await setup();
    portionBefore = await c.h.setPortion(PORTION / 512);
  });
  after(async () => {
    await c.h.setPortion(portionBefore);
    await c.h.cleanup();
  });

  const diffFiles = async () => (await fs.readdir(c.diff)).filter((f) => f.startsWith('bkp-diff-'));

  test('storage grows while the snapshot is held: portion after portion, and the restore has the snapshot-time content', async () => {
    const atSnapshot = await sha256Of(c.dev);
    const run = await startPaused(c, ['full', '--device', c.dev, '--json'], '64M');
    assert.equal((await diffFiles()).length, 1, 'one portion before the writes');
    // 24 MiB of copy-on-write in 1 MiB steps, giving bkp time to answer each request
    for (let i = 0; i < 24; i++) {
      await c.h.write(c.dev, i * 2 * MiB, patternBuffer(200 + i, i * 2 * MiB, 1 * MiB));
      for (let t = 0; (await diffFiles()).length * PORTION - (i + 1) * MiB < PORTION / 2; t++) {
        assert.ok(t < 600, `bkp did not append storage within 60 s (${(await diffFiles()).length} portions for ${i + 1} MiB written)`);
        await sleep(100);
      }
    }
    const files = (await diffFiles()).length;
    assert.ok(files >= 6, `difference storage grew to ${files} portions of 4 MiB for 24 MiB written`);
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(res.warnings, []);
    assert.equal(await restoreHash(c, res.backupId), atSnapshot);
    await noSnapshotsLeft(c);
  });

  test('storage overflows past --diff-storage-limit: exit 22, nothing committed, snapshot and files gone', async () => {
    const before = await listBackups(c);
    const run = await startPaused(c, ['full', '--device', c.dev], '4M');
    await c.h.write(c.dev, 0, patternBuffer(300, 0, 16 * MiB)); // four times the limit
    await sleep(1000);
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, ExitCode.SNAPSHOT_FAILED, r.stderr);
    assert.match(r.stderr, /overflowed its difference storage/);
    assert.deepEqual(await listBackups(c), before, 'nothing committed');
    await noSnapshotsLeft(c);
  });
});
