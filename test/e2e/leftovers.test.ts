/**
 * What failed commits and prunes leave on a local repository is collected (issue 18 item 20): the
 * empty `backups/<id>/` directory of a removed backup or of a commit that failed goes with the
 * next prune or gc (a dry run counts it); a backup's device locks leave no directory behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage } from '../support/data.js';

test('prune and gc collect empty backup directories; device locks leave none', async () => {
  const t = tempDir('bkp-leftovers-');
  try {
    const img = path.join(t.dir, 'disk.img');
    const repo = path.join(t.dir, 'repo');
    const locks = path.join(t.dir, 'device-locks');
    const env = { BKP_LOCK_DIR: locks };
    await makeImage(img, 2 * 1024 * 1024, 'leftovers');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    for (let i = 0; i < 3; i++) assert.equal((await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--quiet'], { env })).code, 0);
    assert.deepEqual(await fs.readdir(locks), [], 'no directory per device ever seen');
    const dirs = () => fs.readdir(path.join(repo, 'backups'));
    assert.equal((await dirs()).length, 3);
    const p = await runBkp(['prune', '--repo', repo, '--keep-last', '1', '--json']);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(JSON.parse(p.stdout).remove.length, 2);
    assert.equal((await dirs()).length, 1, 'the pruned backups leave no empty directory');
    // a commit that failed (full disk, kill) leaves the directory its index was to go into
    await fs.mkdir(path.join(repo, 'backups', '20260101T000000.000Z-abcdef'));
    await fs.writeFile(path.join(repo, 'backups', '20260101T000000.000Z-abcdef', '.tmp-0123456789abcdef'), 'half an index');
    const dry = JSON.parse((await runBkp(['gc', '--repo', repo, '--dry-run', '--json'])).stdout);
    assert.equal(dry.leftoversRemoved, 2, 'the temporary file and its directory');
    assert.equal((await dirs()).length, 2, 'a dry run removes nothing');
    const gc = await runBkp(['gc', '--repo', repo, '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.equal(JSON.parse(gc.stdout).leftoversRemoved, 2);
    assert.equal((await dirs()).length, 1);
    assert.equal((await runBkp(['verify', '--repo', repo])).code, 0);
  } finally {
    t.cleanup();
  }
});
