/**
 * gc must decide what is garbage from a listing made under its lock, never from one a Repository
 * made earlier: a backup committed in between would otherwise lose its packs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { Repository } from '../../src/repo/repository.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { collectGarbage } from '../../src/repo/gc.js';

test('a backup committed after a Repository listed (cached) keeps its packs through gc', async () => {
  const t = tempDir('bkp-gc-stale-');
  try {
    const repoDir = path.join(t.dir, 'repo');
    const img = path.join(t.dir, 'd.img');
    await fs.writeFile(img, randomBytes(2 * 1024 * 1024));
    assert.equal((await runBkp(['init', '--repo', repoDir, '--chunk-size', '256K'])).code, 0);
    const repo = await Repository.open(new LocalTarget(repoDir));
    assert.deepEqual(await repo.listBackups({ cached: true }), [], 'listed (and cached) before the backup');
    const b = await runBkp(['full', '--repo', repoDir, '--device', img, '--no-snapshot']);
    assert.equal(b.code, 0, b.stderr);
    const r = await collectGarbage(repo);
    assert.equal(r.packsRemoved, 0, 'no pack of the new backup is garbage');
    const out = path.join(t.dir, 'out.img');
    assert.equal((await runBkp(['restore', '--repo', repoDir, '--to', out])).code, 0);
    assert.ok((await fs.readFile(out)).equals(await fs.readFile(img)));
  } finally {
    t.cleanup();
  }
});
