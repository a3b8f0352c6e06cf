/**
 * Damage in the repository is found and named, never restored silently.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, sha256Of } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let repo: string;
let img: string;
let backupId: string;

async function packs(): Promise<string[]> {
  return (await fs.readdir(path.join(repo, 'packs'), { recursive: true }))
    .map(String)
    .filter((f) => f.endsWith('.pack'))
    .map((f) => path.join(repo, 'packs', f));
}

beforeEach(async () => {
  t = tempDir();
  repo = path.join(t.dir, 'repo');
  img = path.join(t.dir, 'disk.img');
  await makeImage(img, 24 * MiB, 'corruption');
  assert.equal((await runBkp(['init', '--repo', repo, '--pack-size', '4M'])).code, 0);
  const r = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
  assert.equal(r.code, 0, r.stderr);
  backupId = JSON.parse(r.stdout).backupId;
});
afterEach(() => t.cleanup());

test('a flipped byte in a pack: verify --read-data names the backup, restore refuses with the device range', async () => {
  const p = (await packs())[0]!;
  const buf = await fs.readFile(p);
  buf[100] = buf[100]! ^ 0x01; // inside the first envelope
  await fs.writeFile(p, buf);

  const quick = await runBkp(['verify', '--repo', repo]);
  assert.equal(quick.code, 0, 'sizes are unchanged: the quick check cannot see a flipped byte');
  const v = await runBkp(['verify', '--repo', repo, '--read-data']);
  assert.equal(v.code, ExitCode.CORRUPT, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`DAMAGED ${backupId}`));
  assert.match(v.stdout, /checksum mismatch/);

  const out = path.join(t.dir, 'out.img');
  const r = await runBkp(['restore', '--repo', repo, '--to', out]);
  assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
  assert.match(r.stderr, /is damaged .*device bytes \d+-\d+/);
});

test('a missing pack: verify names the backup without reading data', async () => {
  await fs.rm((await packs())[0]!);
  const v = await runBkp(['verify', '--repo', repo, '--json']);
  assert.equal(v.code, ExitCode.CORRUPT);
  const res = JSON.parse(v.stdout);
  assert.equal(res.ok, false);
  assert.equal(res.backups[0].backupId, backupId);
  assert.match(res.backups[0].problems[0], /pack [0-9a-f]{32} is missing/);
  const r = await runBkp(['restore', '--repo', repo, '--to', path.join(t.dir, 'out.img')]);
  assert.equal(r.code, ExitCode.CORRUPT);
  assert.match(r.stderr, /is missing: device bytes/);
});

test('a truncated pack and a damaged index are both reported', async () => {
  const p = (await packs())[0]!;
  const st = await fs.stat(p);
  await fs.truncate(p, Math.floor(st.size / 2));
  const idxDir = path.join(repo, 'backups', backupId);
  const idx = path.join(idxDir, (await fs.readdir(idxDir))[0]!);
  const ib = await fs.readFile(idx);
  ib[ib.length - 40] = ib[ib.length - 40]! ^ 0xff;
  await fs.writeFile(idx, ib);
  const v = await runBkp(['verify', '--repo', repo]);
  assert.equal(v.code, ExitCode.CORRUPT);
  assert.match(v.stdout, /index .* is damaged: index checksum mismatch/);
  const r = await runBkp(['restore', '--repo', repo, '--to', path.join(t.dir, 'out.img')]);
  assert.equal(r.code, ExitCode.CORRUPT);
  assert.match(r.stderr, /damaged/);
  // gc must not treat the packs of an unreadable index as garbage
  const gc = await runBkp(['gc', '--repo', repo]);
  assert.equal(gc.code, ExitCode.CORRUPT);
  assert.equal((await packs()).length > 0, true);
});

test('undamaged repository: verify --read-data passes and the restore is byte-equal', async () => {
  const v = await runBkp(['verify', '--repo', repo, '--read-data']);
  assert.equal(v.code, 0, v.stdout);
  const out = path.join(t.dir, 'out.img');
  assert.equal((await runBkp(['restore', '--repo', repo, '--to', out])).code, 0);
  assert.equal(await sha256Of(out), await sha256Of(img));
});

test('after a pack is lost, the next backups store its chunks again and restore byte-equal', async () => {
  await fs.rm((await packs())[0]!);
  const full = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
  assert.equal(full.code, 0, full.stderr);
  const newId = JSON.parse(full.stdout).backupId;
  assert.ok(JSON.parse(full.stdout).devices[0].stats.chunksNew > 0, 'chunks of the lost pack are stored again');
  const incr = await runBkp(['incr', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
  assert.equal(incr.code, 0, incr.stderr);
  const incrId = JSON.parse(incr.stdout).backupId;
  for (const id of [newId, incrId]) {
    const out = path.join(t.dir, `out-${id}.img`);
    const r = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(out), await sha256Of(img));
  }
  const v = await runBkp(['verify', '--repo', repo, '--json']);
  const damaged = JSON.parse(v.stdout).backups.filter((b: { ok: boolean }) => !b.ok).map((b: { backupId: string }) => b.backupId);
  assert.deepEqual(damaged, [backupId], 'only the backup made before the loss is damaged');
});
