/**
 * bkp through the blksnap module (the real one in the kernel lab, else the fake — test/module/ctx.ts):
 * snapshot-consistent fulls while the device is written, CBT incrementals after scattered writes,
 * and a bkp killed with SIGKILL while it holds its snapshot.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { patternBuffer } from '../support/blksnap-fake.js';
import { KIND, MiB, backup, bkp, listBackups, noSnapshotsLeft, restoreHash, setup, snapshotsInModule, startPaused, writeBlocks, type Ctx } from './ctx.js';

const CBT_BLOCK = 64 * 1024;
const CHUNK = 1 * MiB; // the repository's default chunk size

describe(`bkp through the blksnap module (${KIND})`, () => {
  let c: Ctx;
  before(async () => (c = await setup()));
  after(() => c.h.cleanup());

  test('full while the device is written: the restore has the snapshot-time content', async () => {
    const atSnapshot = await sha256Of(c.dev);
    const run = await startPaused(c, ['full', '--device', c.dev, '--json']);
    await c.h.write(c.dev, 0, patternBuffer(99, 0, 2 * MiB));
    await c.h.write(c.dev, 40 * MiB, patternBuffer(98, 40 * MiB, 1 * MiB));
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.snapshot, true);
    assert.notEqual(await sha256Of(c.dev), atSnapshot, 'the device did change during the backup');
    assert.equal(await restoreHash(c, res.backupId), atSnapshot);
    await noSnapshotsLeft(c);
  });

  test('CBT incr after scattered writes: reads what the kernel marked, restores byte-equal', async () => {
    await backup(c, 'incr'); // the writes of the previous test are behind us
    // 24 writes of 4 KiB in 24 distinct 64 KiB CBT blocks, two of them in one 1 MiB chunk
    const offsets = Array.from({ length: 24 }, (_, i) => (i * 41 + 3) % (c.size / CBT_BLOCK)).map((b, i) => b * CBT_BLOCK + (i % 16) * 4096);
    offsets.push(offsets[0]! + 8192); // a second write in the first block
    await writeBlocks(c, c.dev, offsets, 7);
    const blocks = new Set(offsets.map((o) => Math.floor(o / CBT_BLOCK)));
    const chunks = new Set(offsets.map((o) => Math.floor(o / CHUNK)));
    const inc = await backup(c, 'incr');
    const d = inc.devices[0]!;
    assert.equal(d.method.mode, 'cbt', JSON.stringify(d.method));
    assert.equal(d.method.cbtChangedBytes, blocks.size * CBT_BLOCK, 'the kernel marked exactly the written 64 KiB blocks');
    // no region held a patch before: exactly the marked 64 KiB pieces are read and stored as patches
    assert.equal(d.stats.bytesRead, d.method.cbtChangedBytes, `read ${d.stats.bytesRead} bytes for ${d.method.cbtChangedBytes} marked`);
    assert.ok(d.stats.bytesRead < chunks.size * CHUNK, `read ${d.stats.bytesRead} bytes, not whole chunks`);
    assert.equal(d.method.changedBytes, blocks.size * CBT_BLOCK, 'every marked piece really changed');
    assert.equal(await restoreHash(c, d.backupId), await sha256Of(c.dev));

    const text = await bkp(c, ['incr', '--device', c.dev]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout + text.stderr, /changed blocks from CBT: 0 B marked, 0 B read/, 'an incr right after reads nothing');
  });

  test('kill -9 while the snapshot is held: status shows it, snapshot cleanup removes it, the next incr is byte-equal', async () => {
    const before = await listBackups(c);
    const run = await startPaused(c, ['incr', '--device', c.dev]);
    run.child.kill('SIGKILL');
    const r = await run.done;
    assert.equal(r.signal, 'SIGKILL');
    assert.equal((await snapshotsInModule(c)).length, 1, 'the killed bkp left its snapshot in the module');
    assert.ok((await fs.readdir(c.diff)).some((f) => f.startsWith('bkp-diff-')), 'and its difference storage');
    const blocked = await bkp(c, ['incr', '--device', c.dev]);
    assert.notEqual(blocked.code, 0, 'a new snapshot of the held device is refused');
    assert.match(blocked.stderr, /bkp snapshot cleanup/);
    const clean = await runBkp(['snapshot', 'cleanup', '--diff-storage', c.diff, '--json'], { env: c.h.env });
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(JSON.parse(clean.stdout).destroyed.length, 1, clean.stdout);
    await noSnapshotsLeft(c);
    assert.deepEqual(await listBackups(c), before, 'nothing committed');
    await writeBlocks(c, c.dev, [5 * MiB, 33 * MiB], 8);
    const inc = await backup(c, 'incr');
    assert.equal(inc.devices[0]!.method.mode, 'cbt', JSON.stringify(inc.devices[0]!.method));
    assert.equal(await restoreHash(c, inc.devices[0]!.backupId), await sha256Of(c.dev));
  });
});
