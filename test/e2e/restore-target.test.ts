/**
 * Restore targets through the real CLI (issue 18 items 4, 12, 13, 16): an image file appears at
 * its path only complete (a failed, stopped or concurrent restore leaves none, and an existing one
 * as it was); a block device left partial is said so; the target path is locked for the whole
 * restore; the repository's own files, the device and the image file holding it are refused even
 * with --force; a FIFO in the repository is damage, never a hang.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp, sh, tempDir } from '../support/env.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { makeImage, sha256Of } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

describe('restore targets', () => {
  const t = tempDir('bkp-restore-target-');
  const repo = path.join(t.dir, 'repo');
  const damaged = path.join(t.dir, 'damaged');
  const src = path.join(t.dir, 'src.img');
  const fifoRepo = path.join(t.dir, 'fifo-repo'); // a copy of repo, made before any test can touch it
  let srcHash: string;
  let goodId: string;
  const loops: Loop[] = [];

  /** Files in the directory that a restore to `target` may have left (the image, its partial). */
  async function leftovers(target: string): Promise<string[]> {
    const base = path.basename(target);
    return (await fs.readdir(path.dirname(target))).filter((n) => n === base || n.startsWith(`.${base}.bkp-partial-`));
  }

  /** Starts a restore that holds its target (paused once the partial image is open) until resume(). */
  async function pausedRestore(args: string[]) {
    const flag = path.join(t.dir, `pause-${Date.now()}`);
    const child = spawn(process.execPath, [BKP, ...args], { env: { ...process.env, BKP_PAUSE_AT: `restore-writing:${flag}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; at: number }>((r) =>
      child.on('close', (code, signal) => r({ code, signal, stderr, at: Date.now() })),
    );
    for (let i = 0; !existsSync(`${flag}.reached`); i++) {
      if (i > 1500) throw new Error(`never reached the pause point: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return { pid: child.pid!, child, done, resume: () => fs.rm(`${flag}.reached`) };
  }

  before(async () => {
    await makeImage(src, SIZE, 'restore-target');
    srcHash = await sha256Of(src);
    for (const r of [repo, damaged]) {
      assert.equal((await runBkp(['init', '--repo', r, '--chunk-size', '64K', '--pack-size', '1M'])).code, 0);
      const b = await runBkp(['full', '--repo', r, '--device', src, '--no-snapshot', '--json', '--quiet']);
      assert.equal(b.code, 0, b.stderr);
      if (r === repo) goodId = JSON.parse(b.stdout).backupId as string;
    }
    await fs.cp(repo, fifoRepo, { recursive: true });
    // one flipped byte inside the first chunk envelope of every pack of `damaged`
    for (const dir of await fs.readdir(path.join(damaged, 'packs'))) {
      for (const name of await fs.readdir(path.join(damaged, 'packs', dir))) {
        const fh = await fs.open(path.join(damaged, 'packs', dir, name), 'r+');
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, 100);
        b[0]! ^= 0xff;
        await fh.write(b, 0, 1, 100);
        await fh.close();
      }
    }
  });
  after(() => {
    for (const l of loops) l.detach();
    try {
      sh('umount', [path.join(t.dir, 'mnt')]);
    } catch {
      // not mounted
    }
    for (const l of loops) l.detach();
    t.cleanup();
  });

  test('a failed restore to a new image path leaves nothing there, and the same command then works without --force', async () => {
    const out = path.join(t.dir, 'new.img');
    const r = await runBkp(['restore', '--repo', damaged, '--to', out]);
    assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
    assert.match(r.stderr, /^bkp: chunk \w+ in pack \w+ is damaged .*\n$/m);
    assert.deepEqual(await leftovers(out), [], 'no image and no partial image at the target');
    const again = await runBkp(['restore', '--repo', repo, '--to', out]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await sha256Of(out), srcHash);
    assert.deepEqual(await leftovers(out), ['new.img']);
  });

  test('a failed --force restore over an existing image leaves the old image as it was', async () => {
    const out = path.join(t.dir, 'old.img');
    await makeImage(out, 3 * MiB, 'old image');
    const before = await sha256Of(out);
    const r = await runBkp(['restore', '--repo', damaged, '--to', out, '--force']);
    assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
    assert.equal(await sha256Of(out), before, 'the old image is intact');
    assert.equal((await fs.stat(out)).size, 3 * MiB);
    assert.deepEqual(await leftovers(out), ['old.img']);
  });

  test('a failed restore to a block device says that the device holds a partial image', async () => {
    const img = path.join(t.dir, 'dev.img');
    await fs.writeFile(img, Buffer.alloc(SIZE));
    const loop = attachLoop(img);
    loops.push(loop);
    const r = await runBkp(['restore', '--repo', damaged, '--to', loop.dev, '--force']);
    assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
    assert.match(r.stderr, new RegExp(`^bkp: .*is damaged.*; ${loop.dev} now holds a partial image: restore again before using it\\n$`, 'm'));
    loop.detach();
  });

  test('SIGTERM to a restore that is stuck ends it within seconds, worded for a restore, with no image left', async () => {
    const out = path.join(t.dir, 'stuck.img');
    const a = await pausedRestore(['restore', '--repo', repo, '--to', out]);
    assert.equal((await leftovers(out)).length, 1, 'the partial image exists while the restore runs');
    const sent = Date.now();
    a.child.kill('SIGTERM');
    const timer = setTimeout(() => a.child.kill('SIGKILL'), 30_000);
    const r = await a.done;
    clearTimeout(timer);
    assert.ok(r.at - sent < 10_000, `ended ${r.at - sent} ms after SIGTERM`);
    assert.ok(r.signal === 'SIGTERM' || r.code === ExitCode.TERMINATED, `ended by ${r.signal ?? r.code}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`bkp: stopped by SIGTERM; the restore did not finish: no image was written to ${out}`));
    assert.doesNotMatch(r.stderr, /nothing was committed/);
    assert.deepEqual(await leftovers(out), [], 'no image and no partial image at the target');
    await a.resume().catch(() => {});
  });

  test('SIGINT during a restore: exit 130 with a line worded for a restore, and no image left', async () => {
    const out = path.join(t.dir, 'interrupted.img');
    const a = await pausedRestore(['restore', '--repo', repo, '--to', out]);
    a.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300)); // the signal is handled before the restore goes on
    await a.resume();
    const r = await a.done;
    assert.equal(r.code, ExitCode.INTERRUPTED, r.stderr);
    assert.match(r.stderr, new RegExp(`\nbkp: stopped by SIGINT; the restore did not finish: no image was written to ${out} \\(a file that was there is left as it was\\); run the same command again\n$`));
    assert.deepEqual(await leftovers(out), []);
  });

  test('the partial image of a restore killed with SIGKILL is removed by the next restore to that path', async () => {
    const out = path.join(t.dir, 'killed.img');
    const a = await pausedRestore(['restore', '--repo', repo, '--to', out]);
    a.child.kill('SIGKILL');
    await a.done;
    const left = await leftovers(out);
    assert.deepEqual(left, [`.killed.img.bkp-partial-${a.pid}`], 'kill -9 leaves the partial image, never an image at the path');
    const r = await runBkp(['restore', '--repo', repo, '--to', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`removed ${path.join(t.dir, left[0]!)}, the partial image of a restore that did not end`));
    assert.deepEqual(await leftovers(out), ['killed.img']);
    assert.equal(await sha256Of(out), srcHash);
    await a.resume().catch(() => {});
  });

  test('a restore locks its new target path: a second restore (--force) and a backup of that path are refused, the first result intact', async () => {
    const out = path.join(t.dir, 'shared.img');
    const other = path.join(t.dir, 'other-repo');
    assert.equal((await runBkp(['init', '--repo', other])).code, 0);
    const a = await pausedRestore(['restore', '--repo', repo, '--to', out, '--quiet']);
    try {
      const second = await runBkp(['restore', '--repo', damaged, '--to', out, '--force']);
      assert.equal(second.code, ExitCode.TARGET_IN_USE, second.stderr);
      assert.match(second.stderr, new RegExp(`^bkp: restore target ${out} is in use: .*locked by pid ${a.pid} .*\\(bkp restore --to ${out}\\)\\n$`));
      const backup = await runBkp(['full', '--repo', other, '--device', out, '--no-snapshot']);
      assert.notEqual(backup.code, 0, 'the half-written target is not backed up');
      const list = await runBkp(['list', '--repo', other, '--json']);
      assert.deepEqual(JSON.parse(list.stdout).backups, []);
    } finally {
      await a.resume();
    }
    const r = await a.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(out), srcHash, 'the first restore wrote the backup, unmixed');
    assert.deepEqual(await leftovers(out), ['shared.img']);
  });

  test('the repository, a file in it, and the image file and device holding it are refused even with --force', async () => {
    const config = path.join(repo, 'config');
    const configBefore = await fs.readFile(config);
    const r1 = await runBkp(['restore', '--repo', repo, '--to', config, '--force']);
    assert.equal(r1.code, ExitCode.TARGET_IN_USE, r1.stderr);
    assert.match(r1.stderr, new RegExp(`^bkp: restore target ${config} is refused even with --force: it is inside the repository ${repo}\\n$`));
    assert.deepEqual(await fs.readFile(config), configBefore);

    // a repository on an ext4 filesystem in an image file, through a loop device
    const fsImg = path.join(t.dir, 'fs.img');
    const mnt = path.join(t.dir, 'mnt');
    await fs.writeFile(fsImg, Buffer.alloc(0));
    await fs.truncate(fsImg, 64 * MiB);
    sh('mkfs.ext4', ['-q', '-F', fsImg]);
    const loop = attachLoop(fsImg);
    loops.push(loop);
    await fs.mkdir(mnt);
    sh('mount', [loop.dev, mnt]);
    const inner = path.join(mnt, 'repo');
    assert.equal((await runBkp(['init', '--repo', inner])).code, 0);
    const b = await runBkp(['full', '--repo', inner, '--device', src, '--no-snapshot', '--quiet']);
    assert.equal(b.code, 0, b.stderr);

    const onImage = await runBkp(['restore', '--repo', inner, '--to', fsImg, '--force']);
    assert.equal(onImage.code, ExitCode.TARGET_IN_USE, onImage.stderr);
    assert.match(onImage.stderr, new RegExp(`^bkp: restore target ${fsImg} is refused even with --force: it is the image file behind ${loop.dev}, which holds the repository ${inner}\\n$`));
    const onDevice = await runBkp(['restore', '--repo', inner, '--to', loop.dev, '--force']);
    assert.equal(onDevice.code, ExitCode.TARGET_IN_USE, onDevice.stderr);
    assert.match(onDevice.stderr, new RegExp(`^bkp: restore target ${loop.dev} is refused even with --force: it holds the filesystem of the repository ${inner}`));
    const v = await runBkp(['verify', '--repo', inner, '--read-data']);
    assert.equal(v.code, 0, `the repository is intact: ${v.stderr}`);
    sh('umount', [mnt]);
    loop.detach();
    sh('e2fsck', ['-f', '-n', fsImg]); // throws unless the filesystem is clean
  });

  test('a FIFO in place of a pack or of config is damage with a clear line, never a hang', async () => {
    const packDir = path.join(fifoRepo, 'packs', (await fs.readdir(path.join(fifoRepo, 'packs')))[0]!);
    const pack = path.join(packDir, (await fs.readdir(packDir))[0]!);
    await fs.rm(pack);
    sh('mkfifo', [pack]);
    const out = path.join(t.dir, 'fifo.img');
    const restore = await runBkp(['restore', '--repo', fifoRepo, '--to', out], { timeoutMs: 20_000 });
    assert.equal(restore.signal, null, 'restore did not hang');
    assert.equal(restore.code, ExitCode.CORRUPT, restore.stderr);
    assert.match(restore.stderr, /^bkp: repository object packs\/\w+\/\w+\.pack in .* is a FIFO, not a regular file: the repository is damaged\n$/m);
    assert.deepEqual(await leftovers(out), []);
    const verify = await runBkp(['verify', '--repo', fifoRepo, '--read-data'], { timeoutMs: 20_000 });
    assert.equal(verify.signal, null, 'verify did not hang');
    assert.equal(verify.code, ExitCode.CORRUPT, verify.stderr);

    const config = path.join(fifoRepo, 'config');
    await fs.rm(config);
    sh('mkfifo', [config]);
    for (const cmd of [['list'], ['verify'], ['restore', '--to', out]]) {
      const r = await runBkp([...cmd, '--repo', fifoRepo], { timeoutMs: 20_000 });
      assert.equal(r.signal, null, `${cmd[0]} did not hang`);
      assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
      assert.match(r.stderr, /^bkp: repository object config in .* is a FIFO, not a regular file: the repository is damaged\n$/);
    }
  });

  test('the backup restores byte-equal through all this', async () => {
    const out = path.join(t.dir, 'final.img');
    const r = await runBkp(['restore', '--repo', repo, '--backup', goodId, '--to', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(out), srcHash);
  });
});
