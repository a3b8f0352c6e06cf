/**
 * A backup whose repository lock is taken over while it writes (its lock expired while it was
 * frozen; a gc took the lock and removed the pack file it was writing): it must say so — exit 11
 * "taken over" — and not blame the repository with whatever error the vanished file caused
 * (issue 18 item 18: it exited 10 "repository … does not exist").
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBackup } from '../../src/backup/run-backup.js';
import { Repository } from '../../src/repo/repository.js';
import { lockGenerations, lockKey } from '../../src/repo/lock.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { createReporter } from '../../src/report/reporter.js';
import { ExitCode, LockedError, fromSystemError } from '../../src/errors.js';
import { makeImage } from '../support/data.js';

describe('a backup whose repository lock is taken over', () => {
  let dir: string;
  const savedLockDir = process.env.BKP_LOCK_DIR;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-takeover-'));
    process.env.BKP_LOCK_DIR = path.join(dir, 'device-locks');
  });
  after(async () => {
    if (savedLockDir === undefined) delete process.env.BKP_LOCK_DIR;
    else process.env.BKP_LOCK_DIR = savedLockDir;
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('fails with LOCKED naming the takeover, and commits nothing', async () => {
    const img = path.join(dir, 'disk.img');
    await makeImage(img, 8 * 1024 * 1024, 'takeover');
    const inner = new LocalTarget(path.join(dir, 'repo'));
    await Repository.init(inner, { chunkSize: 256 * 1024 });
    // the store as the frozen writer finds it when it runs again: another process holds the lock
    // (a newer generation), and the temporary file of the pack it was writing is gone, which the
    // local target reports as it does for a missing repository (ENOENT)
    const target = Object.create(inner) as LocalTarget;
    target.put = async (key, body, opts) => {
      if (!key.startsWith('packs/')) return inner.put(key, body, opts);
      const next = ((await lockGenerations(inner))[0] ?? 0) + 1;
      const rec = { host: 'other-host.example', pid: 4242, startedAt: new Date().toISOString(), command: 'bkp gc', expiresAt: new Date(Date.now() + 600_000).toISOString(), state: 'held' };
      await inner.put(lockKey(next), Buffer.from(JSON.stringify(rec)));
      const vanished = Object.assign(new Error(`ENOENT: no such file or directory, rename '${key}.tmp'`), { code: 'ENOENT' });
      throw fromSystemError(vanished, 'repository', inner.location);
    };
    await assert.rejects(
      runBackup({ target, devices: [img], kind: 'full', snapshot: false, diffStorageDir: dir, diffStorageLimit: 0, reporter: createReporter({ quiet: true }) }),
      (e: Error) => {
        assert.ok(e instanceof LockedError, `${e.name}: ${e.message}`);
        assert.equal(e.exitCode, ExitCode.LOCKED);
        assert.match(e.message, /lock was taken over by another process/);
        return true;
      },
    );
    const repo = await Repository.open(inner);
    assert.deepEqual(await repo.listBackups(), []);
  });
});
