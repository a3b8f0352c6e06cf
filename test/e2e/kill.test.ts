/**
 * SIGKILL at seeded random moments of the real `bkp full`, `incr` (through the blksnap fake),
 * `prune` and `gc` on a local repository: random delays, and random crash points (BKP_CRASH_AT).
 * After every kill: `bkp snapshot cleanup` leaves no snapshot and no difference-storage file (after
 * prune and gc there must be nothing to clean up at all), the repository verifies (every chunk
 * read), every backup committed before the kill restores byte-equal, nothing uncommitted looks
 * committed, prune removed only what its policy allows, and a following `incr` succeeds.
 *
 * The seed is printed (a test diagnostic); BKP_TEST_SEED=N replays a run, BKP_KILL_POINTS=N
 * changes how many kills are made (default 50).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { runBkp, runBkpKilled } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { mulberry32 } from '../support/random.js';
import { blksnapHarness, pattern } from '../support/blksnap-fake.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { Repository } from '../../src/repo/repository.js';
import { runVerify } from '../../src/restore/verify.js';
import { runRestore } from '../../src/restore/restore.js';
import { createReporter } from '../../src/report/reporter.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const SEED = Number(process.env.BKP_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const KILLS = Number(process.env.BKP_KILL_POINTS ?? 50);
/** Node needs about this long before bkp does anything; earlier kills teach nothing. */
const STARTUP_MS = 150;

type Op = 'full' | 'incr' | 'prune' | 'gc';

/** Crash points each command passes (CONTRIBUTING.md, BKP_CRASH_AT); `:N` = the N-th time. */
const CRASH_POINTS: Record<Op, string[]> = {
  full: ['snapshot-created', 'pack-stored:1', 'pack-stored:2', 'before-commit', 'after-commit'],
  incr: ['snapshot-created', 'pack-stored:1', 'before-commit', 'after-commit'],
  prune: ['prune-removed:1', 'prune-removed:2', 'repack-packs-written', 'repack-index-rewritten', 'gc-deleted:1', 'gc-deleted:3'],
  gc: ['repack-packs-written', 'gc-deleted:1', 'gc-deleted:1', 'gc-deleted:2'],
};

test(`SIGKILL at ${KILLS} seeded random moments of full, incr, prune and gc (seed ${SEED})`, async (t) => {
  t.diagnostic(`kill harness seed ${SEED} (replay with BKP_TEST_SEED=${SEED})`);
  const rnd = mulberry32(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const h = await blksnapHarness('fake', { portionSectors: 8192 }); // 4 MiB portions
  try {
    const dev = await h.loop(SIZE, pattern(SEED));
    const repoDir = path.join(h.dir, 'repo');
    const diff = path.join(h.dir, 'diff');
    const out = path.join(h.dir, 'restored.img');
    await fs.mkdir(diff);
    const env = { BKP_BLKSNAP_FAKE: h.fakeDir };
    const snapArgs = ['--diff-storage', diff, '--diff-storage-limit', '64M'];
    const argsOf = (op: Op, keepLast: number) =>
      op === 'full' || op === 'incr'
        ? [op, '--repo', repoDir, '--device', dev, ...snapArgs, '--quiet']
        : op === 'prune'
          ? ['prune', '--repo', repoDir, '--keep-last', String(keepLast), '--quiet']
          : ['gc', '--repo', repoDir, '--quiet'];
    const init = await runBkp(['init', '--repo', repoDir, '--chunk-size', '64K', '--pack-size', '1M']);
    assert.equal(init.code, 0, init.stderr);

    const expected = new Map<string, string>(); // committed backup id → sha256 of the device at its snapshot
    const proven = new Map<string, string>(); // backup id → sha256 of the index file that restored byte-equal
    let restores = 0;
    const listed = async () => (await (await Repository.open(new LocalTarget(repoDir))).listBackups()).map((r) => r.backupId);
    /** Random 4 KiB writes through the fake, so that the tracker sees them. */
    const churn = async () => {
      const n = 1 + Math.floor(rnd() * 24);
      for (let i = 0; i < n; i++) {
        const offset = Math.floor(rnd() * (SIZE / 4096)) * 4096;
        const block = Buffer.alloc(4096);
        for (let j = 0; j < 4096; j += 4) block.writeUInt32LE((rnd() * 2 ** 32) >>> 0, j);
        await h.write(dev, offset, block);
      }
    };
    const backup = async (kind: 'full' | 'incr', why: string) => {
      await churn();
      const hash = await sha256Of(dev);
      const before = new Set(await listed());
      const r = await runBkp(argsOf(kind, 0), { env });
      assert.equal(r.code, 0, `${why}: ${kind} (seed ${SEED}): ${r.stderr}`);
      const added = (await listed()).filter((b) => !before.has(b));
      assert.equal(added.length, 1, `${why}: one backup committed`);
      expected.set(added[0]!, hash);
    };

    /** Everything that must hold after a kill (or a run the kill came too late for). */
    /**
     * After a run (killed or not): snapshots and difference storage, then the repository — while
     * the following incr runs, when `next` is given (readers need no lock; the checks are of the
     * backups listed before it starts, and every random draw is made before anything runs at once,
     * so that a seed replays exactly).
     */
    const check = async (when: string, snapshotsInvolved: boolean, next?: () => Promise<void>) => {
      await checkSnapshots(when, snapshotsInvolved);
      const now = await listed();
      assert.deepEqual(now.filter((b) => !expected.has(b)), [], `nothing uncommitted looks committed after ${when}`);
      assert.deepEqual([...expected.keys()].filter((b) => !now.includes(b)), [], `no committed backup lost after ${when}`);
      const lucky = rnd() < 0.25 ? now[Math.floor(rnd() * now.length)] : undefined;
      await Promise.all([checkRepository(when, now, lucky), next?.()]);
    };
    const checkSnapshots = async (when: string, snapshotsInvolved: boolean) => {
      // prune and gc never touch the module: there must be nothing to clean up at all
      if (snapshotsInvolved) {
        const clean = await runBkp(['snapshot', 'cleanup', '--diff-storage', diff, '--json'], { env });
        assert.equal(clean.code, 0, `snapshot cleanup after ${when}: ${clean.stderr}`);
      }
      const state = await h.fake!.state();
      const after = snapshotsInvolved ? ' + cleanup' : '';
      assert.deepEqual(Object.keys(state.snapshots), [], `no snapshot left after ${when}${after}`);
      assert.deepEqual(await fs.readdir(diff), [], `no difference-storage file left after ${when}${after}`);
      assert.deepEqual(await fs.readdir(path.join(h.fakeDir, 'cow')), [], `no copy-on-write data held after ${when}${after}`);
    };
    const checkRepository = async (when: string, ids: string[], lucky: string | undefined) => {
      const repo = await Repository.open(new LocalTarget(repoDir));
      const reporter = createReporter({ quiet: true });
      const v = await runVerify({ repo, readData: true, reporter });
      assert.deepEqual(v.backups.filter((b) => !b.ok), [], `verify --read-data after ${when}`);
      // A restore is a function of the index and the envelopes it names, and verify --read-data
      // has just checked every one of those envelopes against the index. So an index that is
      // byte-identical to one that already restored byte-equal still does; a new or rewritten
      // (repacked) index is restored in full, and now and then one more chosen at random.
      for (const ref of (await repo.listBackups()).filter((r) => ids.includes(r.backupId))) {
        const indexHash = createHash('sha256').update(await fs.readFile(path.join(repoDir, ref.key))).digest('hex');
        if (proven.get(ref.backupId) === indexHash && ref.backupId !== lucky) continue;
        await runRestore({ repo, ref, to: out, force: true, reporter });
        assert.equal(await sha256Of(out), expected.get(ref.backupId), `backup ${ref.backupId} restores byte-equal after ${when}`);
        proven.set(ref.backupId, indexHash);
        restores++;
      }
    };

    await backup('full', 'first backup');
    const est: Record<Op, number> = { full: 700, incr: 450, prune: 400, gc: 350 };
    const tally: Record<string, { tried: number; killed: number; completed: number }> = {};
    let kills = 0;
    for (let round = 0; kills < KILLS; round++) {
      assert.ok(round < KILLS * 2, `too few runs were killed (${kills} of ${round}; seed ${SEED})`);
      // prune more often as backups pile up, so that every round stays cheap
      const op = expected.size >= 8 && rnd() < 0.5 ? 'prune' : pick<Op>(['full', 'full', 'incr', 'incr', 'incr', 'prune', 'prune', 'gc', 'gc']);
      const byPoint = rnd() < 0.4;
      const point = byPoint ? pick(CRASH_POINTS[op]) : undefined;
      // timed kills land anywhere from the end of node's start-up to the usual end of the command
      const delay = byPoint ? undefined : Math.floor(STARTUP_MS + rnd() * (est[op] - STARTUP_MS));
      const keepLast = 2 + Math.floor(rnd() * 3);
      const cls = `${op} ${byPoint ? 'crash point' : 'timed'}`;
      const when = `round ${round}: ${op} killed ${point ? `at ${point}` : `after ${delay} ms`} (seed ${SEED})`;
      const tl = (tally[cls] ??= { tried: 0, killed: 0, completed: 0 });
      tl.tried++;

      if (op === 'full' || op === 'incr') await churn();
      const hash = op === 'full' || op === 'incr' ? await sha256Of(dev) : '';
      const before = await listed();
      const r = await runBkpKilled(argsOf(op, keepLast), { ...env, ...(point ? { BKP_CRASH_AT: point } : {}) }, delay);
      const killed = r.signal === 'SIGKILL';
      if (killed) {
        kills++;
        tl.killed++;
      } else {
        // the kill came too late (or the crash point was not on this run's path): it must have succeeded
        assert.equal(r.code, 0, `${when}: not killed, so it must succeed: ${r.stderr}`);
        tl.completed++;
        est[op] = Math.max(est[op] * 0.8, r.ms);
      }
      const after = await listed();
      const added = after.filter((b) => !before.includes(b));
      const removed = before.filter((b) => !after.includes(b));
      if (op === 'full' || op === 'incr') {
        assert.ok(added.length <= 1, `${when}: at most one backup committed`);
        assert.deepEqual(removed, [], `${when}: a backup removes nothing`);
        if (killed && point === 'after-commit') assert.equal(added.length, 1, `${when}: committed before the kill`);
        if (killed && point && point !== 'after-commit') assert.equal(added.length, 0, `${when}: killed before the commit`);
        if (!killed) assert.equal(added.length, 1, `${when}: committed`);
        for (const b of added) expected.set(b, hash);
      } else {
        assert.deepEqual(added, [], `${when}: ${op} adds no backup`);
        if (op === 'gc') assert.deepEqual(removed, [], `${when}: gc removes no backup`);
        // prune --keep-last N (one device): only backups older than the N newest may go
        const newest = before.slice(-keepLast);
        assert.deepEqual(removed.filter((b) => newest.includes(b)), [], `${when}: prune kept the ${keepLast} newest`);
        if (!killed && op === 'prune') assert.deepEqual(after, newest, `${when}: prune removed all the rest`);
        for (const b of removed) {
          expected.delete(b);
          proven.delete(b);
        }
      }
      await check(when, op === 'full' || op === 'incr', () => backup('incr', `incr after ${when}`));
    }
    await check('the last incr', true);
    const gc = await runBkp(['gc', '--repo', repoDir, '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    await check('a final gc', false);
    t.diagnostic(`kill harness seed ${SEED}: ${kills} kills, ${restores} full restores; per class (tried/killed/completed first): ${Object.entries(tally)
      .map(([k, v]) => `${k} ${v.tried}/${v.killed}/${v.completed}`)
      .join(', ')}`);
  } finally {
    await h.cleanup();
  }
});
