/**
 * Retention: prune removes what the policy does not keep, gc and repack shrink the repository,
 * and every kept backup still restores byte-equal — also after a kill at any step, and while a
 * backup holds the lock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp, tempDir } from '../support/env.js';
import { makeImage, scribble, sha256Of } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;

async function repoBytes(repo: string): Promise<number> {
  let n = 0;
  for (const f of await fs.readdir(path.join(repo, 'packs'), { recursive: true })) {
    const st = await fs.stat(path.join(repo, 'packs', String(f)));
    if (st.isFile()) n += st.size;
  }
  return n;
}

test('prune keeps what the policy says, shrinks the repository, and survives kills at every step', async () => {
  const t = tempDir();
  try {
    const img = path.join(t.dir, 'disk.img');
    const repo = path.join(t.dir, 'repo');
    const SIZE = 16 * MiB;
    await makeImage(img, SIZE, 'prune');
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '1M'])).code, 0);
    const content = new Map<string, string>();
    const full = async () => {
      const r = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json', '--quiet']);
      assert.equal(r.code, 0, r.stderr);
      const id = JSON.parse(r.stdout).backupId as string;
      content.set(id, await sha256Of(img));
      return id;
    };
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      await scribble(img, SIZE, 400, `round${i}`);
      ids.push(await full());
    }
    const restoresEqual = async (keep: string[]) => {
      for (const id of keep) {
        const out = path.join(t.dir, 'out.img');
        const r = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out, '--force']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await sha256Of(out), content.get(id), `backup ${id} restores byte-equal`);
      }
      const v = await runBkp(['verify', '--repo', repo, '--read-data']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    };

    // dry run: nothing changes
    const before = await repoBytes(repo);
    const dry = await runBkp(['prune', '--repo', repo, '--keep-last', '2', '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(JSON.parse(dry.stdout).remove.length, 4);
    assert.equal(await repoBytes(repo), before);
    assert.equal(JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups.length, 6);

    // kills in the middle of prune, gc and repack leave a repository where every kept backup restores
    for (const point of ['prune-removed', 'repack-packs-written', 'repack-index-rewritten', 'gc-deleted']) {
      const r = await runBkp(['prune', '--repo', repo, '--keep-last', '5'], { env: { BKP_CRASH_AT: point } });
      const listed = (JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups as Array<{ backupId: string }>).map((b) => b.backupId);
      assert.ok(listed.length >= 5, `after a kill at ${point}: ${listed.length} backups`);
      await restoresEqual(listed);
      void r;
    }

    const r = await runBkp(['prune', '--repo', repo, '--keep-last', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(
      res.keep.map((k: { backupId: string }) => k.backupId).sort(),
      ids.slice(-2).sort(),
      'the two newest are kept',
    );
    assert.ok(res.gc.packsRemoved > 0);
    assert.ok(res.gc.packsRepacked > 0, 'packs that were mostly garbage were repacked');
    const after = await repoBytes(repo);
    assert.ok(after < before * 0.8, `the repository shrank: ${before} → ${after} bytes`);
    const listed = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups;
    assert.equal(listed.length, 2);
    await restoresEqual(ids.slice(-2));
  } finally {
    t.cleanup();
  }
});

test('prune waits for nobody: a running backup holds the lock and prune exits 11 naming it', async () => {
  const t = tempDir();
  try {
    const img = path.join(t.dir, 'disk.img');
    const repo = path.join(t.dir, 'repo');
    await makeImage(img, 4 * MiB, 'lock');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    const flag = path.join(t.dir, 'pause');
    const child = spawn(process.execPath, [BKP, 'full', '--repo', repo, '--device', img, '--no-snapshot', '--quiet'], {
      env: { ...process.env, BKP_PAUSE_AT: `backup-locked:${flag}` },
      stdio: 'ignore',
    });
    const done = new Promise<number | null>((r) => child.on('close', r));
    while (!existsSync(`${flag}.reached`)) await new Promise((r) => setTimeout(r, 20));
    const p = await runBkp(['prune', '--repo', repo, '--keep-last', '1']);
    assert.equal(p.code, ExitCode.LOCKED, p.stderr);
    assert.match(p.stderr, new RegExp(`locked by pid ${child.pid} on \\S+ since`));
    const g = await runBkp(['gc', '--repo', repo]);
    assert.equal(g.code, ExitCode.LOCKED);
    // readers are not blocked
    assert.equal((await runBkp(['list', '--repo', repo])).code, 0);
    await fs.rm(`${flag}.reached`);
    assert.equal(await done, 0);
    assert.equal((await runBkp(['prune', '--repo', repo, '--keep-last', '1'])).code, 0);
  } finally {
    t.cleanup();
  }
});

test('prune without a rule, or with a negative count, is a usage error', async () => {
  const t = tempDir();
  try {
    const repo = path.join(t.dir, 'repo');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    const a = await runBkp(['prune', '--repo', repo]);
    assert.equal(a.code, ExitCode.USAGE);
    assert.match(a.stderr, /name what to keep/);
    const b = await runBkp(['prune', '--repo', repo, '--keep-daily', '-1']);
    assert.equal(b.code, ExitCode.USAGE);
    assert.match(b.stderr, /--keep-daily must be a whole number/);
  } finally {
    t.cleanup();
  }
});
