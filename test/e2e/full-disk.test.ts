/**
 * A local repository on a small filesystem that fills up (a loop-mounted ext4 of a few MiB):
 * the backup that does not fit fails cleanly (exit 19, one line), nothing of it is committed,
 * the earlier backup still verifies and restores, and once space is made the next one works.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir, sh } from '../support/env.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { sha256Of } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const t = tempDir('bkp-full-disk-');
const loops: Loop[] = [];
const mnt = path.join(t.dir, 'mnt');
let mounted = false;

before(async () => {
  const fsimg = path.join(t.dir, 'fs.img');
  await fs.writeFile(fsimg, '');
  await fs.truncate(fsimg, 12 * MiB);
  const l = attachLoop(fsimg);
  loops.push(l);
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', l.dev]);
  await fs.mkdir(mnt);
  sh('mount', [l.dev, mnt]);
  mounted = true;
});
after(() => {
  if (mounted) sh('umount', [mnt]);
  for (const l of loops) l.detach();
  t.cleanup();
});

async function randomImage(name: string, size: number): Promise<string> {
  const p = path.join(t.dir, name);
  await fs.writeFile(p, randomBytes(size)); // incompressible: stored as large as it is
  return p;
}

test('a repository whose filesystem fills up: clean failure, nothing committed, still verifies', { timeout: 120_000 }, async () => {
  const repo = path.join(mnt, 'repo');
  assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '256K', '--pack-size', '1M'])).code, 0);
  const small = await randomImage('small.img', 3 * MiB);
  const first = await runBkp(['full', '--repo', repo, '--device', small, '--no-snapshot', '--json']);
  assert.equal(first.code, 0, first.stderr);
  const firstId = JSON.parse(first.stdout).backupId as string;

  const big = await randomImage('big.img', 24 * MiB);
  const r = await runBkp(['full', '--repo', repo, '--device', big, '--no-snapshot']);
  assert.equal(r.code, ExitCode.NO_SPACE, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => /no space/i.test(l));
  assert.ok(errors.length >= 1, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at |internal error/m);

  const list = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout);
  assert.deepEqual(
    list.backups.map((b: { backupId: string }) => b.backupId),
    [firstId],
    'only the backup from before the disk filled up',
  );
  const v = await runBkp(['verify', '--repo', repo, '--read-data']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const out = path.join(t.dir, 'restored.img');
  assert.equal((await runBkp(['restore', '--repo', repo, '--backup', firstId, '--to', out])).code, 0);
  assert.equal(await sha256Of(out), await sha256Of(small));

  // gc gives back what the failed run stored; then a backup that fits succeeds
  const g = await runBkp(['gc', '--repo', repo]);
  assert.equal(g.code, 0, g.stderr);
  const again = await runBkp(['full', '--repo', repo, '--device', await randomImage('again.img', 3 * MiB), '--no-snapshot']);
  assert.equal(again.code, 0, again.stderr);
  const v2 = await runBkp(['verify', '--repo', repo, '--read-data']);
  assert.equal(v2.code, 0, v2.stdout + v2.stderr);
});
