/**
 * The whole pipeline through blksnap — the fake of the kernel module (shared/docs/blksnap.md),
 * the real `bkp` binary, real loop devices: snapshot-consistent fulls, CBT incrementals, every
 * reason a chain breaks, overflow, signals, leftovers.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

interface Ctx {
  h: BlksnapHarness;
  dev: string;
  repo: string;
  diff: string;
  env: NodeJS.ProcessEnv;
}

async function setup(config = {}): Promise<Ctx> {
  const h = await blksnapHarness('fake', { portionSectors: 8192, ...config }); // 4 MiB portions
  const dev = await h.loop(SIZE, pattern(1));
  const repo = path.join(h.dir, 'repo');
  const diff = path.join(h.dir, 'diff');
  await fs.mkdir(diff);
  assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '256K'])).code, 0);
  return { h, dev, repo, diff, env: { BKP_BLKSNAP_FAKE: h.fakeDir } };
}

function bkp(c: Ctx, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runBkp([...args, '--repo', c.repo, ...(['full', 'incr'].includes(args[0]!) ? ['--diff-storage', c.diff, '--diff-storage-limit', '64M'] : [])], {
    env: { ...c.env, ...env },
  });
}

async function backup(c: Ctx, kind: 'full' | 'incr', extra: string[] = []) {
  const r = await bkp(c, [kind, '--device', c.dev, '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  return { id: res.backupId as string, dev: res.devices[0], warnings: res.warnings as string[] };
}

async function restoreHash(c: Ctx, id: string): Promise<string> {
  const out = path.join(c.h.dir, `restore-${id}.img`);
  const r = await bkp(c, ['restore', '--backup', id, '--to', out]);
  assert.equal(r.code, 0, r.stderr);
  const h = await sha256Of(out);
  await fs.rm(out);
  return h;
}

/** Random 4 KiB writes through the fake (so they are tracked), seeded. */
async function churn(c: Ctx, count: number, seed: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const block = Math.imul(i + 1, 2654435761 ^ seed) >>> 0;
    const offset = (block % (SIZE / 4096)) * 4096;
    await c.h.write(c.dev, offset, patternBuffer(seed * 1000 + i, offset, 4096));
  }
}

async function noSnapshotsLeft(c: Ctx) {
  const st = await c.h.fake!.state();
  assert.deepEqual(Object.keys(st.snapshots), [], 'every snapshot destroyed');
  assert.deepEqual(await fs.readdir(c.diff), [], 'every difference-storage file removed');
}

/** Starts bkp paused right after the snapshot is taken; returns the child and a resume(). */
async function startPaused(c: Ctx, args: string[]) {
  const flag = path.join(c.h.dir, `pause-${Date.now()}`);
  const child = spawn(process.execPath, [BKP, ...args, '--repo', c.repo, '--diff-storage', c.diff, '--diff-storage-limit', '64M'], {
    env: { ...process.env, ...c.env, BKP_PAUSE_AT: `snapshot-taken:${flag}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.on('close', (code) => r({ code, stdout, stderr })));
  for (let i = 0; !existsSync(`${flag}.reached`); i++) {
    if (i > 1500) throw new Error(`bkp never reached the pause point: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, done, resume: () => fs.rm(`${flag}.reached`) };
}

describe('backups through blksnap (fake module)', () => {
  let c: Ctx;
  before(async () => (c = await setup()));
  after(() => c.h.cleanup());

  test('full: the snapshot-time content is backed up even while the device is written', async () => {
    const atSnapshot = await sha256Of(c.dev);
    const run = await startPaused(c, ['full', '--device', c.dev, '--json']);
    // rewrite 2 MiB mid-backup (within the first 4 MiB portion of difference storage)
    await c.h.write(c.dev, 0, patternBuffer(99, 0, 1 * MiB));
    await c.h.write(c.dev, 20 * MiB, patternBuffer(98, 20 * MiB, 1 * MiB));
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.snapshot, true);
    assert.notEqual(await sha256Of(c.dev), atSnapshot, 'the device did change');
    assert.equal(await restoreHash(c, res.backupId), atSnapshot);
    await noSnapshotsLeft(c);
  });

  test('incr after writes reads only changed chunks and restores byte-equal; older points too', async () => {
    const points: Array<[string, string]> = [];
    const full = await backup(c, 'full');
    points.push([full.id, await sha256Of(c.dev)]);
    for (let round = 1; round <= 3; round++) {
      await churn(c, 20, round);
      const inc = await backup(c, 'incr');
      assert.equal(inc.dev.method.mode, 'cbt', JSON.stringify(inc.dev.method));
      assert.ok(inc.dev.stats.bytesRead <= 20 * 256 * 1024, `read ${inc.dev.stats.bytesRead} bytes for 20 changed blocks`);
      assert.ok(inc.dev.stats.bytesRead > 0);
      assert.ok(inc.dev.method.changedBytes > 0 && inc.dev.method.changedBytes <= inc.dev.stats.bytesRead);
      points.push([inc.id, await sha256Of(c.dev)]);
    }
    for (const [id, hash] of points) assert.equal(await restoreHash(c, id), hash, `restore of ${id}`);
    const v = await bkp(c, ['verify', '--read-data']);
    assert.equal(v.code, 0, v.stdout);
    await noSnapshotsLeft(c);
  });

  test('an incr with no change reads and stores nothing', async () => {
    await backup(c, 'incr'); // settle whatever came before
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'cbt');
    assert.equal(inc.dev.stats.bytesRead, 0);
    assert.equal(inc.dev.stats.bytesStored, 0);
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
  });

  test('module reload: new generation → digest fallback with the reason, still byte-equal', async () => {
    await backup(c, 'incr');
    await c.h.fake!.reload();
    await churn(c, 5, 40);
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'digest');
    assert.match(inc.dev.method.reason, /generation changed/);
    assert.equal(inc.dev.stats.bytesRead, SIZE, 'a fallback reads the whole device');
    assert.ok(inc.dev.stats.chunksNew <= 5, 'but stores only what changed');
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
    const next = await backup(c, 'incr');
    assert.equal(next.dev.method.mode, 'cbt', 'the chain is valid again after the fallback');
  });

  test('a corrupted CBT map (tracking failed): new generation at take → digest fallback, byte-equal', async () => {
    await backup(c, 'incr');
    await churn(c, 4, 55);
    await c.h.fake!.corruptTracker(c.dev);
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'digest');
    assert.match(inc.dev.method.reason, /generation changed.*corrupted map/);
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
  });

  test('--no-fallback refuses a broken chain with exit 23 and commits nothing', async () => {
    await c.h.fake!.reload();
    const before = (await bkp(c, ['list', '--json'])).stdout;
    const r = await bkp(c, ['incr', '--device', c.dev, '--no-fallback']);
    assert.equal(r.code, ExitCode.CHAIN_BROKEN, r.stderr);
    assert.match(r.stderr, /cannot back up incrementally: .*generation changed.*--no-fallback/);
    assert.equal((await bkp(c, ['list', '--json'])).stdout, before);
    await noSnapshotsLeft(c);
  });

  test('device resized: digest fallback, restore has the new size', async () => {
    await backup(c, 'incr');
    await c.h.resize(c.dev, SIZE + 4 * MiB);
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'digest');
    assert.match(inc.dev.method.reason, /size changed/);
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
    await c.h.resize(c.dev, SIZE);
    await backup(c, 'incr');
  });

  test('change number wraps at 255: new generation → digest fallback, byte-equal', async () => {
    await backup(c, 'incr');
    // take and destroy snapshots in-process until the tracker's number wraps
    const dev = await c.h.blksnap.devIdOf(c.dev);
    const start = (await c.h.blksnap.tracker(dev))!;
    for (let n = start.snapNumber; n < 255; n++) {
      const s = await c.h.blksnap.createSnapshot([dev]);
      const diskFile = path.join(c.h.dir, 'wrap-storage.img');
      await fs.writeFile(diskFile, '');
      await fs.truncate(diskFile, 8 * MiB);
      const stor = await c.h.blksnap.devIdOf(c.dev);
      await s.appendStorage(stor, [{ sector: 0, count: 16384 }]);
      await s.take();
      await s.destroy();
    }
    await churn(c, 3, 77);
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'digest', JSON.stringify(inc.dev.method));
    assert.match(inc.dev.method.reason, /generation changed/);
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
  });

  test('status shows the tracker; a crashed bkp leaves a snapshot that snapshot cleanup removes', async () => {
    const status = () => runBkp(['status', '--json'], { env: c.env });
    const st = await status();
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.equal(s.trackers.length, 1);
    assert.equal(s.snapshots.length, 0);
    const crashed = await bkp(c, ['full', '--device', c.dev], { BKP_CRASH_AT: 'before-commit' });
    assert.equal(crashed.code, null, 'killed');
    const s2 = await status();
    assert.equal(s2.code, 0, s2.stderr);
    const st2 = JSON.parse(s2.stdout);
    assert.equal(st2.snapshots.length, 1, 'the crash left its snapshot');
    assert.ok((await fs.readdir(c.diff)).length > 0, 'and its difference storage');
    const clean = await runBkp(['snapshot', 'cleanup', '--diff-storage', c.diff, '--json'], { env: c.env });
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(JSON.parse(clean.stdout).destroyed.length, 1);
    await noSnapshotsLeft(c);
    const v = await bkp(c, ['verify']);
    assert.equal(v.code, 0, v.stdout);
    const after = await backup(c, 'incr');
    assert.equal(await restoreHash(c, after.id), await sha256Of(c.dev));
  });

  test('a bkp killed between CREATE and its first difference file: cleanup destroys the untaken snapshot', async () => {
    const before = (await bkp(c, ['list', '--json'])).stdout;
    const crashed = await bkp(c, ['incr', '--device', c.dev], { BKP_CRASH_AT: 'snapshot-created' });
    assert.equal(crashed.signal, 'SIGKILL', crashed.stderr);
    const left = Object.keys((await c.h.fake!.state()).snapshots);
    assert.equal(left.length, 1, 'the kill left a snapshot');
    assert.deepEqual((await fs.readdir(c.diff)).filter((f) => f.startsWith('bkp-diff-')), [], 'that no difference file names');
    const blocked = await bkp(c, ['incr', '--device', c.dev]);
    assert.equal(blocked.code, ExitCode.SNAPSHOT_FAILED, 'a new snapshot of the device is refused meanwhile');
    assert.match(blocked.stderr, /bkp snapshot cleanup/);

    // while another bkp might be creating its snapshot (a live marker), an untaken snapshot is not touched
    const live = path.join(c.diff, `bkp-pending-${process.pid}`);
    await fs.writeFile(live, `${process.pid}\n`);
    const careful = await runBkp(['snapshot', 'cleanup', '--diff-storage', c.diff, '--json'], { env: c.env });
    assert.equal(careful.code, 0, careful.stderr);
    assert.deepEqual(JSON.parse(careful.stdout).destroyed, []);
    await fs.rm(live);

    const clean = await runBkp(['snapshot', 'cleanup', '--diff-storage', c.diff, '--json'], { env: c.env });
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(JSON.parse(clean.stdout).destroyed.length, 1, clean.stdout);
    await noSnapshotsLeft(c);
    assert.equal((await bkp(c, ['list', '--json'])).stdout, before, 'nothing committed');
    const after = await backup(c, 'incr');
    assert.equal(await restoreHash(c, after.id), await sha256Of(c.dev));
  });

  test('SIGTERM mid-backup: exit 143, snapshot destroyed, difference storage removed, nothing committed', async () => {
    const before = (await bkp(c, ['list', '--json'])).stdout;
    const run = await startPaused(c, ['incr', '--device', c.dev]);
    run.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    await run.resume();
    const r = await run.done;
    assert.equal(r.code, ExitCode.TERMINATED, r.stderr);
    assert.equal((await bkp(c, ['list', '--json'])).stdout, before);
    await noSnapshotsLeft(c);
  });
});

describe('SIGINT between devices (fake module)', () => {
  let c: Ctx;
  before(async () => (c = await setup()));
  after(() => c.h.cleanup());

  test('SIGINT after the first of two devices: exit 130, the first committed, nothing of the second, snapshot and lock released', async () => {
    const second = await c.h.loop(SIZE, pattern(2));
    const flag = path.join(c.h.dir, 'pause');
    const child = spawn(process.execPath, [BKP, 'full', '--device', c.dev, '--device', second, '--repo', c.repo, '--diff-storage', c.diff, '--diff-storage-limit', '64M', '--quiet'], {
      env: { ...process.env, ...c.env, BKP_PAUSE_AT: `source-opened:${flag}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const done = new Promise<number | null>((r) => child.on('close', r));
    const reached = async () => {
      for (let i = 0; !existsSync(`${flag}.reached`); i++) {
        if (i > 1500) throw new Error(`bkp never reached the pause point: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const atSnapshot = await sha256Of(c.dev);
    await reached(); // the first device is about to be read
    await fs.rm(`${flag}.reached`);
    await reached(); // the first is committed, the second about to be read
    child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 100));
    await fs.rm(`${flag}.reached`);
    assert.equal(await done, ExitCode.INTERRUPTED, stderr);
    assert.match(stderr, /stopped by SIGINT; nothing was committed for the device in progress/);
    const list = JSON.parse((await bkp(c, ['list', '--json'])).stdout).backups as Array<{ backupId: string; device: string }>;
    assert.deepEqual(list.map((b) => b.device), [c.dev], 'only the first device was committed');
    assert.equal(await restoreHash(c, list[0]!.backupId), atSnapshot);
    await noSnapshotsLeft(c);
    const next = await bkp(c, ['incr', '--device', second]);
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stderr, /stale lock/, 'the lock was released, not left behind');
  });
});

describe('difference storage overflow (fake module)', () => {
  let c: Ctx;
  before(async () => (c = await setup({ portionSectors: 2048 }))); // 1 MiB portions
  after(() => c.h.cleanup());

  test('a snapshot that overflows fails the backup with exit 22, commits nothing, and is released', async () => {
    const flag = path.join(c.h.dir, 'pause');
    const child = spawn(process.execPath, [BKP, 'full', '--device', c.dev, '--repo', c.repo, '--diff-storage', c.diff, '--diff-storage-limit', '1M'], {
      env: { ...process.env, ...c.env, BKP_PAUSE_AT: `snapshot-taken:${flag}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const done = new Promise<number | null>((r) => child.on('close', r));
    while (!existsSync(`${flag}.reached`)) await new Promise((r) => setTimeout(r, 20));
    await c.h.write(c.dev, 0, patternBuffer(5, 0, 8 * MiB)); // far more than 1 MiB of copy-on-write
    await fs.rm(`${flag}.reached`);
    const code = await done;
    assert.equal(code, ExitCode.SNAPSHOT_FAILED, stderr);
    assert.match(stderr, /overflowed/);
    assert.equal(JSON.parse((await bkp(c, ['list', '--json'])).stdout).backups.length, 0);
    await noSnapshotsLeft(c);
  });

  test('a snapshot that overflows after the last read, before the commit, fails the backup the same way', async () => {
    const flag = path.join(c.h.dir, 'pause-stored');
    const child = spawn(process.execPath, [BKP, 'full', '--device', c.dev, '--repo', c.repo, '--diff-storage', c.diff, '--diff-storage-limit', '1M'], {
      env: { ...process.env, ...c.env, BKP_PAUSE_AT: `chunks-stored:${flag}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const done = new Promise<number | null>((r) => child.on('close', r));
    while (!existsSync(`${flag}.reached`)) await new Promise((r) => setTimeout(r, 20));
    await c.h.write(c.dev, 0, patternBuffer(6, 0, 8 * MiB)); // every chunk is read: only the commit is left
    await fs.rm(`${flag}.reached`);
    const code = await done;
    assert.equal(code, ExitCode.SNAPSHOT_FAILED, stderr);
    assert.match(stderr, /the snapshot of .* overflowed its difference storage/);
    assert.doesNotMatch(stderr, /\n\s+at /, 'one line, no stack trace');
    assert.equal(JSON.parse((await bkp(c, ['list', '--json'])).stdout).backups.length, 0);
    await noSnapshotsLeft(c);
  });
});
