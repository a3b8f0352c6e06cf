/** One bkp per device: the local device lock. */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { acquireDeviceLocks, deviceLockName, deviceLockDir } from '../../src/lock/device-lock.js';
import { lockGenerations, lockKey } from '../../src/repo/lock.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { tempDir } from '../support/env.js';
import { LockedError, NotADeviceError } from '../../src/errors.js';

describe('device lock', () => {
  const t = tempDir('bkp-devlock-');
  const saved = process.env.BKP_LOCK_DIR;
  const img = path.join(t.dir, 'a.img');
  const other = path.join(t.dir, 'b.img');
  const link = path.join(t.dir, 'a-link.img');
  const warnings: string[] = [];
  const warn = (m: string) => void warnings.push(m);
  before(async () => {
    process.env.BKP_LOCK_DIR = path.join(t.dir, 'locks');
    await fs.writeFile(img, 'a');
    await fs.writeFile(other, 'b');
    await fs.symlink(img, link);
  });
  after(() => {
    if (saved === undefined) delete process.env.BKP_LOCK_DIR;
    else process.env.BKP_LOCK_DIR = saved;
    t.cleanup();
  });

  test('a device is named by what it is: a symlink and its file share a lock; block devices by major:minor', async () => {
    assert.equal(await deviceLockName(link), await deviceLockName(img));
    assert.notEqual(await deviceLockName(other), await deviceLockName(img));
    assert.match(await deviceLockName(img), /^file-\d+-\d+$/);
    const loopish = (await fs.readdir('/dev')).map((n) => `/dev/${n}`).find((p) => /^\/dev\/(loop\d+|sd[a-z]|vd[a-z]|nvme\d+n\d+)$/.test(p));
    if (loopish) {
      const st = await fs.stat(loopish);
      if (st.isBlockDevice()) assert.match(await deviceLockName(loopish), /^blk-\d+-\d+$/);
    }
    assert.equal(deviceLockDir(), path.join(t.dir, 'locks'));
  });

  test('a second holder of a device is refused with pid, host and time; other devices are free', async () => {
    const a = await acquireDeviceLocks([img], 'bkp full a', warn);
    await assert.rejects(acquireDeviceLocks([other, link], 'bkp full b', warn), (e: unknown) => {
      assert.ok(e instanceof LockedError);
      assert.match(e.message, new RegExp(`^device ${link} is locked by pid ${process.pid} on ${os.hostname()} since \\d{4}-\\d\\d-\\d\\dT.* \\(bkp full a\\)$`));
      return true;
    });
    // all or nothing: the failed attempt released `other`
    const b = await acquireDeviceLocks([other], 'bkp full b', warn);
    await b.release();
    await a.release();
    const again = await acquireDeviceLocks([img, other], 'bkp incr', warn);
    await again.release();
    assert.deepEqual(warnings, []);
  });

  test("a dead process's device lock is taken over with a warning", async () => {
    const child = spawn('true');
    const pid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    const target = new LocalTarget(path.join(deviceLockDir(), await deviceLockName(img)));
    const next = ((await lockGenerations(target))[0] ?? 0) + 1;
    await target.put(lockKey(next), Buffer.from(JSON.stringify({ host: os.hostname(), pid, startedAt: '2026-01-01T00:00:00.000Z', command: 'bkp full', state: 'held' })));
    warnings.length = 0;
    const l = await acquireDeviceLocks([img], 'bkp incr', warn);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`stale lock on device ${img} of pid ${pid}\\b`));
    await l.release();
  });

  test('a lock directory that cannot be created is a user error naming BKP_LOCK_DIR', async () => {
    process.env.BKP_LOCK_DIR = path.join(img, 'locks'); // under a regular file
    try {
      await assert.rejects(acquireDeviceLocks([img], 'x', warn), (e: unknown) => e instanceof NotADeviceError && /device lock directory .* BKP_LOCK_DIR/.test(e.message));
    } finally {
      process.env.BKP_LOCK_DIR = path.join(t.dir, 'locks');
    }
  });

  test('a released device lock leaves nothing behind, unless someone holds it after (issue 18 item 20)', async () => {
    const dir = deviceLockDir();
    const a = await acquireDeviceLocks([img, other], 'bkp full', warn);
    assert.equal((await fs.readdir(dir)).length, 2);
    await a.release();
    assert.deepEqual(await fs.readdir(dir), [], 'no directory per device ever seen');
    // a holder that came after (here: a newer generation written meanwhile) keeps its lock object
    const b = await acquireDeviceLocks([img], 'bkp full', warn);
    const target = new LocalTarget(path.join(dir, await deviceLockName(img)));
    const mine = (await lockGenerations(target))[0]!;
    await target.put(lockKey(mine + 1), Buffer.from(JSON.stringify({ host: os.hostname(), pid: process.pid, startedAt: new Date().toISOString(), command: 'bkp incr', state: 'held' })));
    await b.release();
    assert.deepEqual(await lockGenerations(target), [mine + 1, mine]);
    await assert.rejects(acquireDeviceLocks([img], 'bkp full', warn), LockedError);
    await fs.rm(path.join(dir, await deviceLockName(img)), { recursive: true });
  });
});
