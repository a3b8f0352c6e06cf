import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { acquireLock, lockGenerations, lockKey, type LockInfo } from '../../src/repo/lock.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { type Target } from '../../src/storage/target.js';
import { ExitCode, LockedError } from '../../src/errors.js';

/** The pid of a process that has exited (and been reaped), so nothing runs under it now. */
async function deadPid(): Promise<number> {
  const child = spawn('true', { stdio: 'ignore' });
  const pid = child.pid!;
  await new Promise((resolve) => child.on('exit', resolve));
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'test setup: the pid is free');
  return pid;
}

/** The newest lock generation: the lock's state. */
async function newestKey(t: Target): Promise<string | undefined> {
  const g = (await lockGenerations(t))[0];
  return g === undefined ? undefined : lockKey(g);
}

/** Who holds the lock (the newest generation, without its state), or undefined when released. */
async function readLock(t: Target): Promise<LockInfo | undefined> {
  const key = await newestKey(t);
  if (!key) return undefined;
  const { state, expiresAt, ...info } = JSON.parse((await t.get(key)).toString('utf8')) as LockInfo & { state: string };
  assert.ok(state !== 'held' || expiresAt === undefined || Date.parse(expiresAt) > Date.now(), 'a held lock expires in the future');
  return state === 'held' ? info : undefined;
}

/** Leaves a held lock as another process would. */
async function writeLock(t: Target, info: Partial<LockInfo>): Promise<void> {
  const full = { host: os.hostname(), pid: 1, startedAt: '2024-01-01T00:00:00.000Z', command: 'backup', ...info, state: 'held' };
  const next = ((await lockGenerations(t))[0] ?? 0) + 1;
  await t.put(lockKey(next), Buffer.from(JSON.stringify(full) + '\n'));
}

describe('repository lock', () => {
  let dir: string;
  let n = 0;
  /** A fresh repository for each test. */
  async function repo(): Promise<LocalTarget> {
    const root = path.join(dir, `repo-${n++}`);
    await fs.mkdir(root, { mode: 0o700 });
    return new LocalTarget(root);
  }
  const warnings: string[] = [];
  const warn = (m: string) => void warnings.push(m);

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-lock-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('the lock object says who holds it', async () => {
    const t = await repo();
    const lock = await acquireLock(t, 'backup', warn);
    const info = await readLock(t);
    assert.deepEqual(info, lock.info);
    assert.equal(info.pid, process.pid);
    assert.equal(info.host, os.hostname());
    assert.equal(info.command, 'backup');
    assert.ok(!Number.isNaN(Date.parse(info.startedAt)));
    await lock.release();
  });

  test('a second acquire while held is LockedError naming the holder pid and host', async () => {
    const t = await repo();
    const lock = await acquireLock(t, 'backup', warn);
    const before = (await t.get((await newestKey(t))!)).toString();
    await assert.rejects(acquireLock(t, 'gc', warn), (e: unknown) => {
      assert.ok(e instanceof LockedError, String(e));
      assert.equal(e.exitCode, ExitCode.LOCKED);
      assert.equal(e.retryable, true);
      assert.match(e.message, new RegExp(`\\bpid ${process.pid}\\b`));
      assert.ok(e.message.includes(os.hostname()), e.message);
      assert.ok(e.message.includes('backup'), 'names the command holding it');
      return true;
    });
    assert.equal((await t.get((await newestKey(t))!)).toString(), before, 'the failed attempt left the lock alone');
    await lock.release();
  });

  test('a lock held by another live process is respected', async () => {
    const t = await repo();
    // pid 1 is alive on every Linux system
    await writeLock(t, { pid: 1, command: 'prune' });
    await assert.rejects(acquireLock(t, 'backup', warn), (e: unknown) => e instanceof LockedError && /pid 1\b/.test(e.message) && e.message.includes('prune'));
    assert.equal((await readLock(t))?.pid, 1);
  });

  test('concurrent acquires: exactly one wins', async () => {
    const t = await repo();
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => acquireLock(t, `cmd-${i}`, warn)));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof LockedError, String(r.reason));
    const lock = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value;
    assert.deepEqual(await readLock(t), lock.info);
    await lock.release();
  });

  test('release, then acquire again works', async () => {
    const t = await repo();
    const first = await acquireLock(t, 'backup', warn);
    await first.release();
    assert.equal(await readLock(t), undefined, 'release leaves the lock released');
    const second = await acquireLock(t, 'gc', warn);
    assert.equal((await readLock(t))?.command, 'gc');
    await second.release();
  });

  test('a lock left by a dead process on this host is taken over with a warning', async () => {
    const t = await repo();
    const pid = await deadPid();
    await writeLock(t, { pid, command: 'backup --device /dev/vdb' });
    warnings.length = 0;
    const lock = await acquireLock(t, 'gc', warn);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`\\b${pid}\\b`));
    assert.match(warnings[0]!, /stale/);
    assert.deepEqual(await readLock(t), lock.info, 'the lock is now ours');
    assert.equal(lock.info.pid, process.pid);
    await lock.release();
  });

  test('a lock left by a pid on another host is not taken over (we cannot tell if it runs)', async () => {
    const t = await repo();
    const pid = await deadPid();
    await writeLock(t, { pid, host: `not-${os.hostname()}` });
    await assert.rejects(acquireLock(t, 'gc', warn), (e: unknown) => e instanceof LockedError && e.message.includes(`not-${os.hostname()}`));
    assert.equal((await readLock(t))?.pid, pid);
  });

  test('an unreadable lock object is treated as held', async () => {
    const t = await repo();
    await t.put(lockKey(1), Buffer.from('{"host": "half-writ'));
    await assert.rejects(acquireLock(t, 'gc', warn), (e: unknown) => e instanceof LockedError && /unreadable/.test(e.message));
    assert.equal((await t.get(lockKey(1))).toString(), '{"host": "half-writ');
  });

  test('release is idempotent and never removes a lock taken later by someone else', async () => {
    const t = await repo();
    const a = await acquireLock(t, 'backup', warn);
    await a.release();
    await a.release();
    const b = await acquireLock(t, 'gc', warn);
    await a.release(); // a late, repeated release of the old holder
    assert.deepEqual(await readLock(t), b.info, 'the second holder keeps its lock');
    await b.release();
    await b.release();
    assert.equal(await readLock(t), undefined);
  });

  test('release when the lock object has already gone is fine', async () => {
    const t = await repo();
    const lock = await acquireLock(t, 'backup', warn);
    await t.delete((await newestKey(t))!);
    await lock.release();
  });

  test('two processes taking over the same stale lock: only one holds it', async () => {
    const t = await repo();
    await writeLock(t, { pid: await deadPid() });
    // B sees the stale lock, then is slow to write its own; A takes over meanwhile
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let bAtPut!: () => void;
    const bReachedPut = new Promise<void>((r) => (bAtPut = r));
    let first = true;
    const slow: Target = {
      location: t.location,
      put: async (k, b, o) => {
        if (first) {
          first = false;
          bAtPut();
          await gate;
        }
        return t.put(k, b, o);
      },
      get: (k, r) => t.get(k, r),
      stat: (k) => t.stat(k),
      list: (p) => t.list(p),
      delete: (k) => t.delete(k),
    };
    const b = acquireLock(slow, 'b', () => {});
    await bReachedPut;
    const a = await acquireLock(t, 'a', () => {});
    openGate();
    const bResult = await b.then(
      (lock) => lock,
      (e: unknown) => e,
    );
    assert.ok(bResult instanceof LockedError, 'B must not hold the lock A took');
    assert.deepEqual(await readLock(t), a.info);
    await a.release();
  });

  test('a process that worked from an old listing backs off when a newer generation exists', async () => {
    const t = await repo();
    const a = await acquireLock(t, 'a', warn);
    await a.release();
    const c = await acquireLock(t, 'c', warn); // generation 2, held
    // B listed when generation 1 was the newest and released: it writes generation 2... which exists
    await assert.rejects(t.put(lockKey(2), Buffer.from('{}'), { ifAbsent: true }));
    await assert.rejects(acquireLock(t, 'b', warn), LockedError);
    assert.deepEqual(await readLock(t), c.info);
    await c.release();
  });
});
