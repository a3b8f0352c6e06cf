/**
 * A repository holds whole disks: everything bkp creates in it — config, packs, indexes, lock
 * generations, temporary files of a killed write — is 0600 and every directory 0700, whatever the
 * umask. So are the difference storage files of a snapshot and a restored image file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp } from '../support/env.js';
import { makeImage, scribble } from '../support/data.js';
import { blksnapHarness, pattern } from '../support/blksnap-fake.js';

/** Every path under `root` (itself included) whose permission bits are not 0700 (dirs) / 0600 (files). */
async function wrongModes(root: string): Promise<string[]> {
  const bad: string[] = [];
  const walk = async (p: string) => {
    const st = await fs.lstat(p);
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      if (mode !== 0o700) bad.push(`${p} ${mode.toString(8)}`);
      for (const name of await fs.readdir(p)) await walk(path.join(p, name));
    } else if (mode !== 0o600) bad.push(`${p} ${mode.toString(8)}`);
  };
  await walk(root);
  return bad;
}

async function count(root: string, pred: (rel: string) => boolean): Promise<number> {
  return (await fs.readdir(root, { recursive: true })).map(String).filter(pred).length;
}

test('repository files and lock files are 0600, directories 0700, with umask 000', async () => {
  const umask = process.umask(0); // the children inherit it: only bkp's own modes protect the data
  const h = await blksnapHarness('fake', { portionSectors: 8192 });
  try {
    const dev = await h.loop(8 * 1024 * 1024, pattern(3));
    const img = path.join(h.dir, 'disk.img');
    await makeImage(img, 8 * 1024 * 1024, 'modes');
    const repo = path.join(h.dir, 'repo');
    const diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff, { mode: 0o755 });
    const env = { BKP_BLKSNAP_FAKE: h.fakeDir };
    const snap = ['--diff-storage', diff, '--diff-storage-limit', '64M'];
    const ok = async (args: string[], e = {}) => {
      const r = await runBkp([...args, '--quiet'], { env: e });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    };
    const check = async (after: string) => assert.deepEqual(await wrongModes(repo), [], `modes after ${after}`);

    await ok(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '256K']);
    await check('init');
    await ok(['full', '--repo', repo, '--device', dev, ...snap], env);
    await check('full');
    assert.ok((await count(path.join(repo, 'locks'), () => true)) > 0, 'lock generations were written');
    assert.ok((await count(path.join(repo, 'packs'), (f) => f.endsWith('.pack'))) > 0);

    // mid-backup: the lock is held, the snapshot's difference storage exists
    const flag = path.join(h.dir, 'pause');
    const child = spawn(process.execPath, [BKP, 'incr', '--repo', repo, '--device', dev, ...snap, '--quiet'], {
      env: { ...process.env, ...env, BKP_PAUSE_AT: `snapshot-taken:${flag}` },
      stdio: 'ignore',
    });
    const done = new Promise<number | null>((r) => child.on('close', r));
    for (let i = 0; !existsSync(`${flag}.reached`); i++) {
      assert.ok(i < 1500, 'the backup reached its pause point');
      await new Promise((r) => setTimeout(r, 20));
    }
    await check('taking the lock');
    const diffFiles = await fs.readdir(diff);
    assert.ok(diffFiles.length > 0, 'difference storage allocated');
    for (const f of diffFiles) assert.equal((await fs.stat(path.join(diff, f))).mode & 0o777, 0o600, `difference storage file ${f}`);
    await fs.rm(`${flag}.reached`);
    assert.equal(await done, 0);
    await check('incr');

    // a backup killed mid-write may leave .tmp- files and unreferenced packs: 0600 too
    await scribble(img, 8 * 1024 * 1024, 50, 'modes');
    const killed = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--quiet'], { env: { BKP_CRASH_AT: 'pack-stored:2' } });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    await check('a killed backup');
    await ok(['incr', '--repo', repo, '--device', img, '--no-snapshot']);
    await ok(['prune', '--repo', repo, '--keep-last', '1']);
    await check('prune');
    await ok(['gc', '--repo', repo]);
    await check('gc');

    const out = path.join(h.dir, 'restored.img');
    await ok(['restore', '--repo', repo, '--to', out]);
    assert.equal((await fs.stat(out)).mode & 0o777, 0o600, 'a restored image file');
  } finally {
    process.umask(umask);
    await h.cleanup();
  }
});
