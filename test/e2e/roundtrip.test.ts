/**
 * The core promise, on real loop devices: what is backed up is what comes back, byte for byte.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir, sh } from '../support/env.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { makeImage, sha256Of } from '../support/data.js';

const MiB = 1024 * 1024;

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await fs.stat(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))).size;
  }
  return n;
}

describe('full backup and restore on loop devices', () => {
  const t = tempDir();
  const loops: Loop[] = [];
  const img = path.join(t.dir, 'source.img');
  const repo = path.join(t.dir, 'repo');
  const SIZE = 48 * MiB + 12 * 1024; // not a multiple of the chunk size
  let src: Loop;
  let sourceHash: string;

  before(async () => {
    await makeImage(img, SIZE, 'roundtrip');
    src = attachLoop(img);
    loops.push(src);
    sourceHash = await sha256Of(src.dev);
    const init = await runBkp(['init', '--repo', repo]);
    assert.equal(init.code, 0, init.stderr);
  });
  after(() => {
    for (const l of loops) l.detach();
    t.cleanup();
  });

  test('full of a loop device, restored to another loop device, is byte-equal', async () => {
    const full = await runBkp(['full', '--device', src.dev, '--repo', repo, '--no-snapshot', '--json']);
    assert.equal(full.code, 0, full.stderr);
    const summary = JSON.parse(full.stdout);
    assert.equal(summary.devices[0].ok, true);
    assert.equal(summary.devices[0].stats.bytesRead, SIZE);

    const targetFile = path.join(t.dir, 'target.img');
    await fs.writeFile(targetFile, '');
    await fs.truncate(targetFile, SIZE + 4 * MiB); // a larger disk: the tail stays as it was
    const dst = attachLoop(targetFile);
    loops.push(dst);
    const r = await runBkp(['restore', '--repo', repo, '--backup', 'latest', '--to', dst.dev]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(dst.dev, SIZE), sourceHash);
  });

  test('restore to a new image file is byte-equal and sparse where the device held zeros', async () => {
    const out = path.join(t.dir, 'restored.img');
    const r = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(out), sourceHash);
    const st = await fs.stat(out);
    assert.equal(st.size, SIZE);
    assert.ok(st.blocks * 512 < SIZE * 0.8, `restored image should be sparse (${st.blocks * 512} bytes allocated of ${SIZE})`);
  });

  test('backing up the same data again stores no new chunk', async () => {
    const before = await dirBytes(path.join(repo, 'packs'));
    const again = await runBkp(['full', '--device', src.dev, '--repo', repo, '--no-snapshot', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const s = JSON.parse(again.stdout).devices[0].stats;
    assert.equal(s.chunksNew, 0);
    assert.equal(s.bytesStored, 0);
    assert.equal(await dirBytes(path.join(repo, 'packs')), before);
    const list = await runBkp(['list', '--repo', repo, '--json']);
    assert.equal(JSON.parse(list.stdout).backups.length, 2);
  });

  test('a device of zeros takes no space in the repository', async () => {
    const zimg = path.join(t.dir, 'zeros.img');
    await fs.writeFile(zimg, '');
    await fs.truncate(zimg, 32 * MiB);
    const z = attachLoop(zimg);
    loops.push(z);
    const zrepo = path.join(t.dir, 'zrepo');
    assert.equal((await runBkp(['init', '--repo', zrepo])).code, 0);
    const r = await runBkp(['full', '--device', z.dev, '--repo', zrepo, '--no-snapshot', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout).devices[0].stats;
    assert.equal(s.chunksZero, 32);
    assert.equal(s.bytesStored, 0);
    const packs = await fs.readdir(path.join(zrepo, 'packs')).catch(() => []);
    assert.equal(packs.length, 0);
    const out = path.join(t.dir, 'zeros-restored.img');
    assert.equal((await runBkp(['restore', '--repo', zrepo, '--to', out])).code, 0);
    assert.equal(await sha256Of(out), await sha256Of(zimg));
  });

  test('several devices in one run, each restorable', async () => {
    const img2 = path.join(t.dir, 'second.img');
    await makeImage(img2, 8 * MiB, 'second');
    const r = await runBkp(['full', '--device', src.dev, '--device', img2, '--repo', repo, '--no-snapshot', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.devices.length, 2);
    const out = path.join(t.dir, 'second-restored.img');
    const rr = await runBkp(['restore', '--repo', repo, '--backup', res.backupId, '--device', img2, '--to', out]);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(await sha256Of(out), await sha256Of(img2));
    // naming no device in a backup of two is an error that says which devices there are
    const amb = await runBkp(['restore', '--repo', repo, '--backup', res.backupId, '--to', path.join(t.dir, 'x.img')]);
    assert.equal(amb.code, 20);
    assert.match(amb.stderr, /several devices/);
  });

  test('restore refuses a target that is too small, mounted, or holds a filesystem', async () => {
    const small = path.join(t.dir, 'small.img');
    await fs.writeFile(small, '');
    await fs.truncate(small, 16 * MiB);
    const s = attachLoop(small);
    loops.push(s);
    const r1 = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', s.dev]);
    assert.equal(r1.code, 16, r1.stderr);
    assert.match(r1.stderr, /holds 16777216 bytes but the backup needs/);

    const fsimg = path.join(t.dir, 'fs.img');
    await fs.writeFile(fsimg, '');
    await fs.truncate(fsimg, 64 * MiB);
    const f = attachLoop(fsimg);
    loops.push(f);
    sh('mkfs.ext4', ['-q', '-F', f.dev]);
    const r2 = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', f.dev]);
    assert.equal(r2.code, 18, r2.stderr);
    assert.match(r2.stderr, /ext4 signature/);

    const mnt = path.join(t.dir, 'mnt');
    await fs.mkdir(mnt);
    sh('mount', [f.dev, mnt]);
    try {
      const r3 = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', f.dev, '--force']);
      assert.equal(r3.code, 17, r3.stderr);
      assert.match(r3.stderr, /mounted on/);
    } finally {
      sh('umount', [mnt]);
    }
    const r4 = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', f.dev, '--force']);
    assert.equal(r4.code, 0, r4.stderr);
    assert.equal(await sha256Of(f.dev, SIZE), sourceHash);
  });

  test('restore refuses to overwrite an existing file without --force', async () => {
    const existing = path.join(t.dir, 'existing.img');
    await fs.writeFile(existing, 'precious');
    const r = await runBkp(['restore', '--repo', repo, '--device', src.dev, '--to', existing]);
    assert.equal(r.code, 18, r.stderr);
    assert.equal(await fs.readFile(existing, 'utf8'), 'precious');
  });
});
