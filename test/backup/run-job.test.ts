/**
 * `bkp run`'s exit code after a committed backup (issue 18 item 18): a prune that fails after it
 * is a warning (exit 4) with the prune's own code in the result — never a failure code that reads
 * as "nothing stored".
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runJob } from '../../src/backup/run-job.js';
import { Repository } from '../../src/repo/repository.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { createReporter } from '../../src/report/reporter.js';
import { ExitCode, StorageUnreachableError } from '../../src/errors.js';
import { makeImage } from '../support/data.js';

describe('bkp run: a prune that fails after the backup', () => {
  let dir: string;
  const savedLockDir = process.env.BKP_LOCK_DIR;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-run-job-'));
    process.env.BKP_LOCK_DIR = path.join(dir, 'device-locks');
  });
  after(async () => {
    if (savedLockDir === undefined) delete process.env.BKP_LOCK_DIR;
    else process.env.BKP_LOCK_DIR = savedLockDir;
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('exit 4, the backup committed, the prune failure and its code in the result', async () => {
    const img = path.join(dir, 'disk.img');
    await makeImage(img, 4 * 1024 * 1024, 'run-job');
    const inner = new LocalTarget(path.join(dir, 'repo'));
    await Repository.init(inner, { chunkSize: 256 * 1024 });
    // the store becomes unreachable once the backup's index is committed: the prune cannot lock
    let committed = false;
    const target = Object.create(inner) as LocalTarget;
    target.put = async (key, body, opts) => {
      await inner.put(key, body, opts);
      if (key.endsWith('.idx')) committed = true;
    };
    target.list = (prefix) => {
      if (committed && prefix.startsWith('locks/')) throw new StorageUnreachableError('the store is unreachable (test)');
      return inner.list(prefix);
    };
    const r = await runJob({ name: 'j', target, devices: [img], snapshot: false, fallback: true, diffStorageDir: dir, diffStorageLimit: 0, retention: { last: 1 }, reporter: createReporter({ quiet: true }) });
    assert.equal(r.backup.devices[0]!.ok, true);
    assert.equal(r.exitCode, ExitCode.WARNINGS);
    assert.deepEqual(r.prune, { ok: false, error: 'the store is unreachable (test)', exitCode: ExitCode.STORAGE_UNREACHABLE });
    assert.equal((await (await Repository.open(inner)).listBackups()).length, 1);
  });
});
