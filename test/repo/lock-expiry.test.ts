/** The repository lock's expiry: what makes it work across hosts (S3) where no pid can be checked. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireLock, holderGone, lockGenerations, lockKey, processSite } from '../../src/repo/lock.js';
import * as osMod from 'node:os';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { LockedError } from '../../src/errors.js';

async function record(t: LocalTarget, gen?: number): Promise<Record<string, unknown>> {
  const g = gen ?? (await lockGenerations(t))[0]!;
  return JSON.parse((await t.get(lockKey(g))).toString('utf8')) as Record<string, unknown>;
}

async function foreignLock(t: LocalTarget, expiresAt: string): Promise<void> {
  const next = ((await lockGenerations(t))[0] ?? 0) + 1;
  const rec = { host: 'other-host.example', pid: 4242, startedAt: '2026-01-01T00:00:00.000Z', command: 'bkp full /dev/sda', expiresAt, state: 'held' };
  await t.put(lockKey(next), Buffer.from(JSON.stringify(rec)));
}

describe('repository lock expiry', () => {
  let dir: string;
  let n = 0;
  const saved = process.env.BKP_LOCK_TTL_SECONDS;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-lock-ttl-'));
  });
  after(async () => {
    if (saved === undefined) delete process.env.BKP_LOCK_TTL_SECONDS;
    else process.env.BKP_LOCK_TTL_SECONDS = saved;
    await fs.rm(dir, { recursive: true, force: true });
  });
  const repo = () => new LocalTarget(path.join(dir, `r${n++}`));

  test('a pid is judged only within its boot and pid namespace', async () => {
    const here = { host: osMod.hostname(), pid: process.pid, startedAt: '', command: '', ...processSite() };
    assert.ok(here.bootId && here.pidNs, 'this machine has /proc boot_id and pid namespaces');
    const dead = 2 ** 22 + 12345; // above pid_max's usual range: no such process
    // same boot, same namespace: the pid decides
    assert.equal(holderGone({ ...here, pid: dead }, here), true);
    assert.equal(holderGone({ ...here, pid: process.pid }, here), false);
    // a container with the same host name: its pids mean nothing here, wait for the expiry
    assert.equal(holderGone({ ...here, pid: dead, pidNs: 'pid:[1]' }, here), false);
    // an earlier boot of this machine: whatever the pid, that process is gone
    // (without /etc/machine-id an earlier boot cannot be told from a clone: then it waits too)
    assert.equal(holderGone({ ...here, pid: process.pid, bootId: 'another-boot' }, here), !!here.machineId);
    // another boot of another machine with this host name (a clone), or of one we cannot tell: wait
    assert.equal(holderGone({ ...here, pid: dead, bootId: 'another-boot', machineId: 'another-machine' }, here), false);
    assert.equal(holderGone({ ...here, pid: dead, bootId: 'another-boot', machineId: undefined }, here), false);
    // another host: never by pid
    assert.equal(holderGone({ ...here, host: 'elsewhere', pid: dead }, here), false);
    // records of older writers (no boot or namespace): the pid on this host decides, as before
    assert.equal(holderGone({ host: here.host, pid: dead }, here), true);
  });

  test('a lock left in another pid namespace under this host name waits for its expiry', async () => {
    const t = repo();
    const rec = { host: osMod.hostname(), pid: 2 ** 22 + 12345, startedAt: '2026-01-01T00:00:00.000Z', command: 'bkp full', pidNs: 'pid:[1]', expiresAt: new Date(Date.now() + 600_000).toISOString(), state: 'held' };
    await t.put(lockKey(1), Buffer.from(JSON.stringify(rec)));
    await assert.rejects(acquireLock(t, 'bkp incr', () => {}), (e: Error) => /is locked by pid/.test(e.message));
    await t.put(lockKey(2), Buffer.from(JSON.stringify({ ...rec, expiresAt: new Date(Date.now() - 1000).toISOString() })));
    const warnings: string[] = [];
    const lock = await acquireLock(t, 'bkp incr', (m) => warnings.push(m));
    assert.match(warnings[0]!, /expired lock/);
    await lock.release();
  });

  test("another host's live lock blocks, naming pid, host and start", async () => {
    const t = repo();
    await foreignLock(t, new Date(Date.now() + 600_000).toISOString());
    await assert.rejects(acquireLock(t, 'bkp incr', () => {}), (e: Error) => /pid 4242 on other-host\.example since 2026-01-01/.test(e.message));
  });

  test("another host's expired lock is taken over with a warning", async () => {
    const t = repo();
    await foreignLock(t, new Date(Date.now() - 1000).toISOString());
    const warnings: string[] = [];
    const lock = await acquireLock(t, 'bkp incr', (m) => warnings.push(m));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /expired lock on repository .* of pid 4242 on other-host\.example/);
    assert.equal((await record(t)).pid, process.pid);
    await lock.release();
    assert.equal((await record(t)).state, 'released');
  });

  test('the holder pushes its expiry forward while it works', async () => {
    process.env.BKP_LOCK_TTL_SECONDS = '3';
    const t = repo();
    const lock = await acquireLock(t, 'bkp full', () => {});
    const first = Date.parse(String((await record(t)).expiresAt));
    assert.ok(first > Date.now() && first <= Date.now() + 3000);
    await sleep(2500); // one refresh happens every second (a third of 3 s)
    const later = Date.parse(String((await record(t)).expiresAt));
    assert.ok(later > first + 1000, `refreshed: ${first} → ${later}`);
    // and so a second process never sees it expired
    await assert.rejects(acquireLock(t, 'bkp gc', () => {}), LockedError);
    await lock.release();
    delete process.env.BKP_LOCK_TTL_SECONDS;
  });

  test('a holder frozen past two thirds of the lifetime confirms before committing, and refuses when taken over', async () => {
    process.env.BKP_LOCK_TTL_SECONDS = '3';
    const t = repo();
    const lock = await acquireLock(t, 'bkp full', () => {});
    // frozen (a suspended VM, SIGSTOP): no timer runs meanwhile ...
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2500);
    // ... and its lock expired, and another host took it over, before it runs again
    const rec = { host: 'other-host.example', pid: 4242, startedAt: '2026-01-01T00:00:00.000Z', command: 'bkp gc', expiresAt: new Date(Date.now() + 600_000).toISOString(), state: 'held' };
    writeFileSync(path.join(dir, `r${n - 1}`, lockKey(lock.generation + 1)), JSON.stringify(rec));
    await assert.rejects(lock.assertHeld(), (e: Error) => /taken over by another process/.test(e.message));
    await lock.release();
    assert.equal((await record(t)).host, 'other-host.example');
    delete process.env.BKP_LOCK_TTL_SECONDS;
  });

  test('a holder that cannot refresh its lock refuses to commit once it may have expired', async () => {
    process.env.BKP_LOCK_TTL_SECONDS = '3';
    const t = repo();
    let failing = false;
    const flaky = Object.create(t) as LocalTarget;
    flaky.put = (k, b, o) => (failing ? Promise.reject(new Error('store unreachable')) : t.put(k, b, o));
    const warnings: string[] = [];
    const lock = await acquireLock(flaky, 'bkp full', (m) => warnings.push(m));
    await lock.assertHeld(); // fresh: no request needed
    failing = true;
    await sleep(2300);
    await assert.rejects(lock.assertHeld(), (e: Error) => /could not be refreshed/.test(e.message));
    assert.ok(warnings.some((w) => /could not refresh/.test(w)), warnings.join('\n'));
    failing = false;
    await lock.release();
    delete process.env.BKP_LOCK_TTL_SECONDS;
  });

  test('a holder whose lock was taken over learns it and refuses to commit', async () => {
    process.env.BKP_LOCK_TTL_SECONDS = '3';
    const t = repo();
    const lock = await acquireLock(t, 'bkp full', () => {});
    await lock.assertHeld();
    // someone takes over (as after an expiry while this process was frozen)
    await foreignLock(t, new Date(Date.now() + 600_000).toISOString());
    await sleep(1500);
    await assert.rejects(lock.assertHeld(), (e: Error) => /taken over by another process/.test(e.message));
    await lock.release();
    // the newer holder's record is untouched by the release
    assert.equal((await record(t)).host, 'other-host.example');
    delete process.env.BKP_LOCK_TTL_SECONDS;
  });
});
