/**
 * kill -9 at chosen and at timed moments of full backups and gc: no committed backup is ever
 * lost or damaged, no half-written backup looks complete, and the next run just works.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, runBkpKilled, tempDir } from '../support/env.js';
import { makeImage, scribble, sha256Of } from '../support/data.js';

const MiB = 1024 * 1024;

async function backups(repo: string): Promise<string[]> {
  const r = await runBkp(['list', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout).backups as Array<{ backupId: string }>).map((b) => b.backupId);
}

test('kill -9 during full backups and gc loses nothing and leaves nothing that looks complete', async () => {
  const t = tempDir();
  try {
    const img = path.join(t.dir, 'disk.img');
    const repo = path.join(t.dir, 'repo');
    const SIZE = 96 * MiB;
    await makeImage(img, SIZE, 'crash');
    assert.equal((await runBkp(['init', '--repo', repo, '--pack-size', '4M', '--chunk-size', '256K'])).code, 0);
    const expected = new Map<string, string>(); // backup id → hash of the image it was taken from

    const full = async (env: NodeJS.ProcessEnv, killAfterMs?: number) => {
      const hash = await sha256Of(img);
      const before = new Set(await backups(repo));
      const r = await runBkpKilled(['full', '--device', img, '--repo', repo, '--no-snapshot', '--quiet'], env, killAfterMs);
      const added = (await backups(repo)).filter((b) => !before.has(b));
      assert.ok(added.length <= 1);
      for (const b of added) expected.set(b, hash);
      return { r, added };
    };
    const checkRepository = async (when: string) => {
      const v = await runBkp(['verify', '--repo', repo, '--read-data']);
      assert.equal(v.code, 0, `verify after ${when}: ${v.stdout}${v.stderr}`);
      for (const [id, hash] of expected) {
        const out = path.join(t.dir, 'check.img');
        const r = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out, '--force']);
        assert.equal(r.code, 0, `restore ${id} after ${when}: ${r.stderr}`);
        assert.equal(await sha256Of(out), hash, `backup ${id} restores byte-equal after ${when}`);
      }
    };

    const first = await full({});
    assert.equal(first.r.code, 0, first.r.stderr);

    // chosen moments: after packs are stored, just before and just after the index commit
    for (const point of ['pack-stored:1', 'pack-stored:3', 'before-commit', 'after-commit']) {
      await scribble(img, SIZE, 300, point);
      const { r, added } = await full({ BKP_CRASH_AT: point });
      assert.equal(r.signal, 'SIGKILL', `the crash point ${point} was reached`);
      assert.equal(added.length, point === 'after-commit' ? 1 : 0, `committed backups after a kill at ${point}`);
      await checkRepository(`kill at ${point}`);
    }
    // timed kills anywhere in the run
    for (const ms of [150, 300, 450, 700]) {
      await scribble(img, SIZE, 300, `t${ms}`);
      await full({}, ms);
      await checkRepository(`kill after ${ms} ms`);
    }

    // the next run takes over the dead process's lock and succeeds
    await scribble(img, SIZE, 300, 'final');
    const next = await full({});
    assert.equal(next.r.code, 0, next.r.stderr);
    assert.equal(next.added.length, 1);

    // gc removes what the killed runs left, and a kill during gc harms nothing
    const packCount = async () => (await fs.readdir(path.join(repo, 'packs'), { recursive: true })).filter((f) => String(f).endsWith('.pack')).length;
    const packsBefore = await packCount();
    const killedGc = await runBkpKilled(['gc', '--repo', repo], { BKP_CRASH_AT: 'gc-deleted' });
    assert.equal(killedGc.signal, 'SIGKILL', 'there was garbage to delete');
    await checkRepository('kill during gc');
    const gc = await runBkp(['gc', '--repo', repo, '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.ok(JSON.parse(gc.stdout).packsRemoved > 0 || (await packCount()) < packsBefore);
    assert.ok((await packCount()) < packsBefore);
    await checkRepository('gc');
  } finally {
    t.cleanup();
  }
});
