/**
 * One writer per repository: backups and gc hold the repository lock while they change it.
 * Readers (list, restore, verify) take no lock.
 *
 * The lock is a sequence of objects `locks/<generation>` (12 digits). The newest generation is
 * the lock's state: `held` by a process, or `released`. To take the lock, a process creates the
 * next generation with a create-only put — of two racing processes exactly one succeeds — and then
 * checks that no newer generation exists (a process that worked from an old listing backs off).
 * Releasing overwrites one's own generation with `released`; generations are never reused, so a
 * slow process can never take a lock that someone else took after it looked. A lock held by a
 * process that died on this host is taken over with a warning. Works unchanged on object stores.
 *
 * A held lock also carries an expiry, which its holder pushes forward while it works (every third
 * of the lifetime, default 15 minutes). A lock whose expiry has passed is stale wherever its holder
 * ran (another host, a container, a machine that died): it is taken over with a warning. A holder
 * that finds a newer generation when it refreshes has lost the lock and must not commit
 * (`assertHeld`).
 */
import * as os from 'node:os';
import { readFileSync, readlinkSync } from 'node:fs';
import { ObjectExistsError, ObjectMissingError, type Target } from '../storage/target.js';
import { LockedError } from '../errors.js';

export const LOCKS_PREFIX = 'locks/';
const KEEP_GENERATIONS = 16;

export interface LockInfo {
  host: string;
  pid: number;
  startedAt: string;
  command: string;
  /** When the lock is stale unless its holder refreshed it (ISO time); absent in old records. */
  expiresAt?: string;
  /** The holder's boot (/proc/sys/kernel/random/boot_id) and pid namespace: what makes `pid` meaningful. */
  bootId?: string;
  pidNs?: string;
  /** The holder's /etc/machine-id: tells an earlier boot of this machine from a clone with its host name. */
  machineId?: string;
}

interface LockRecord extends LockInfo {
  state: 'held' | 'released';
}

export interface RepoLock {
  info: LockInfo;
  generation: number;
  /**
   * Rejects (LockedError) when the lock may no longer be ours: a refresh found another holder, or
   * the lock was not confirmed for longer than two thirds of its lifetime (then it is confirmed
   * first). Call before every change that relies on holding the lock.
   */
  assertHeld(): Promise<void>;
  /**
   * Asks the store now whether the lock is still ours: the LockedError saying it was taken over,
   * or undefined. For a holder whose work failed, to tell the user the real cause (a gc that took
   * the lock over may have removed the files this one was writing).
   */
  takenOver(): Promise<InstanceType<typeof LockedError> | undefined>;
  release(): Promise<void>;
}

/** Lifetime of a lock without refresh, in ms ($BKP_LOCK_TTL_SECONDS, default 15 minutes). */
export function lockTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.BKP_LOCK_TTL_SECONDS ?? 900);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 900_000;
}

export function lockKey(generation: number): string {
  return `${LOCKS_PREFIX}${String(generation).padStart(12, '0')}`;
}

function readOr(path: string, read: (p: string) => string): string | undefined {
  try {
    return read(path).trim();
  } catch {
    return undefined;
  }
}

/** This process's boot and pid namespace, recorded so that another process can judge its pid. */
export function processSite(): { bootId?: string; pidNs?: string; machineId?: string } {
  return {
    machineId: readOr('/etc/machine-id', (p) => readFileSync(p, 'utf8')) || undefined,
    bootId: readOr('/proc/sys/kernel/random/boot_id', (p) => readFileSync(p, 'utf8')),
    pidNs: readOr('/proc/self/ns/pid', (p) => readlinkSync(p)),
  };
}

/**
 * Whether the holder of a lock record is certainly gone, as seen from this process: it ran on
 * this machine in an earlier boot, or in this boot and pid namespace under a pid that no longer
 * exists. A holder in another pid namespace (a container with the same host name) or on another
 * machine with the same host name (a clone) cannot be judged by its pid: only its lock's expiry
 * frees the lock.
 */
export function holderGone(rec: Pick<LockInfo, 'host' | 'pid' | 'bootId' | 'pidNs' | 'machineId'>, here: LockInfo): boolean {
  if (rec.host !== here.host) return false;
  if (rec.bootId && here.bootId && rec.bootId !== here.bootId) {
    return !!rec.machineId && rec.machineId === here.machineId; // an earlier boot of this machine
  }
  if (rec.pidNs && here.pidNs && rec.pidNs !== here.pidNs) return false;
  return !alive(rec.pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Generations present, newest first. */
export async function lockGenerations(target: Target): Promise<number[]> {
  const gens: number[] = [];
  for await (const o of target.list(LOCKS_PREFIX)) {
    const m = /^locks\/(\d{12})$/.exec(o.key);
    if (m) gens.push(Number(m[1]));
  }
  return gens.sort((a, b) => b - a);
}

async function readRecord(target: Target, gen: number): Promise<LockRecord | 'missing' | 'unreadable'> {
  let raw: Buffer;
  try {
    raw = await target.get(lockKey(gen));
  } catch (e) {
    if (e instanceof ObjectMissingError) return 'missing';
    throw e; // the store failed (network, denied): that says nothing about the lock
  }
  try {
    const r = JSON.parse(raw.toString('utf8')) as LockRecord;
    return r && typeof r.pid === 'number' && typeof r.host === 'string' ? r : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/**
 * `subject` names what is locked in messages (default `repository <location>`); the device locks
 * of src/lock/device-lock.ts use the same algorithm on a local directory.
 */
export interface AcquireOptions {
  /**
   * Delete old lock generations (keeping the last 16). gc and prune do it; backups do it only
   * when generations pile up past 500, so that a backup's request count stays fixed.
   */
  housekeeping?: boolean;
  /**
   * Leave nothing behind (device locks, one directory per device ever seen): on release, when no
   * newer generation exists, delete this lock's generations instead of writing `released`. So that
   * a generation is still never reused, a lock with none takes a clock-based one (hundredths of a
   * second since the epoch), above any a slower process may still be about to write.
   */
  removeOnRelease?: boolean;
}

export async function acquireLock(
  target: Target,
  command: string,
  warn: (msg: string) => void,
  subject = `repository ${target.location}`,
  opts: AcquireOptions = {},
): Promise<RepoLock> {
  const ttl = lockTtlMs();
  const info: LockInfo = { host: os.hostname(), pid: process.pid, startedAt: new Date().toISOString(), command, ...processSite() };
  const takenAt = Date.now();
  const record = (state: LockRecord['state']): Buffer =>
    Buffer.from(JSON.stringify({ ...info, ...(state === 'held' ? { expiresAt: new Date(Date.now() + ttl).toISOString() } : {}), state } satisfies LockRecord) + '\n');
  for (let attempt = 0; attempt < 10; attempt++) {
    const gens = await lockGenerations(target);
    const top = gens[0] ?? 0;
    if (top > 0) {
      const rec = await readRecord(target, top);
      if (rec === 'missing') continue; // cleaned up meanwhile: look again
      if (rec === 'unreadable') throw new LockedError(`${subject} is locked by an unknown process (lock object ${lockKey(top)} is unreadable)`);
      if (rec.state === 'held') {
        const expired = rec.expiresAt !== undefined && Date.parse(rec.expiresAt) < Date.now();
        const dead = holderGone(rec, info);
        if (!expired && !dead) {
          throw new LockedError(`${subject} is locked by pid ${rec.pid} on ${rec.host} since ${rec.startedAt} (${rec.command})`);
        }
        warn(
          dead
            ? `taking over a stale lock on ${subject} of pid ${rec.pid} (${rec.command}, started ${rec.startedAt}), which is no longer running${rec.bootId && rec.bootId !== info.bootId ? ' (it ran before this machine last booted)' : ''}`
            : `taking over an expired lock on ${subject} of pid ${rec.pid} on ${rec.host} (${rec.command}, started ${rec.startedAt}, expired ${rec.expiresAt})`,
        );
      }
    }
    const gen = opts.removeOnRelease ? Math.max(top + 1, Math.floor(Date.now() / 10)) : top + 1;
    try {
      await target.put(lockKey(gen), record('held'), { ifAbsent: true });
    } catch (e) {
      if (e instanceof ObjectExistsError) continue; // another process took this generation: look again
      throw e;
    }
    // a process that listed before a newer generation appeared must not hold the lock
    const newest = (await lockGenerations(target))[0] ?? gen;
    if (newest > gen) {
      await target.delete(lockKey(gen));
      continue;
    }
    if (opts.housekeeping || gens.length > 500) {
      for (const old of gens.filter((g) => g <= gen - KEEP_GENERATIONS)) await target.delete(lockKey(old)).catch(() => {});
    }
    let released = false;
    let lost: string | undefined;
    // when the lock was last known to be ours: the start of the last successful take or refresh,
    // on the monotonic clock (a frozen process or a wall-clock jump cannot fool it)
    let confirmedAt = performance.now() - (Date.now() - takenAt);
    let refreshing: Promise<void> = Promise.resolve();
    const refresh = async () => {
      if (lost) return;
      const started = performance.now();
      const newest = (await lockGenerations(target))[0] ?? 0;
      if (newest !== gen) {
        lost = `the ${subject} lock was taken over by another process (generation ${newest}) while this one worked; nothing more is committed`;
        clearInterval(timer);
        return;
      }
      await target.put(lockKey(gen), record('held'));
      confirmedAt = started;
    };
    const refreshNow = (): Promise<void> => {
      refreshing = refreshing.then(refresh).catch((e: unknown) => warn(`could not refresh the ${subject} lock: ${(e as Error).message}`));
      return refreshing;
    };
    const timer = setInterval(() => void refreshNow(), Math.max(1000, ttl / 3));
    timer.unref();
    return {
      info,
      generation: gen,
      async assertHeld() {
        // Within two thirds of the lifetime since the lock was last confirmed, nobody can have
        // taken it over (that needs the expiry to pass). Later — the process was frozen, or
        // refreshes failed — confirm it now, before anything is committed.
        if (!lost && performance.now() - confirmedAt > (ttl * 2) / 3) await refreshNow();
        if (lost) throw new LockedError(lost);
        if (performance.now() - confirmedAt > (ttl * 2) / 3) {
          throw new LockedError(`the ${subject} lock could not be refreshed for ${Math.round((performance.now() - confirmedAt) / 1000)} s; nothing more is committed`);
        }
      },
      async takenOver() {
        if (!lost && !released) await refreshNow();
        return lost ? new LockedError(lost) : undefined;
      },
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await refreshing;
        if (lost) return; // the generation is someone else's history now: leave it
        try {
          if (opts.removeOnRelease && ((await lockGenerations(target))[0] ?? gen) === gen) {
            for (const g of (await lockGenerations(target)).filter((g) => g <= gen).reverse()) await target.delete(lockKey(g));
            return;
          }
          await target.put(lockKey(gen), record('released'));
        } catch (e) {
          // what the lock protected is done (committed or not); a lock left held is stale for the
          // next run on this host at once, and for everyone once it expires
          warn(`could not release the repository lock (${(e as Error).message}); it is taken over by the next run on this host, or by any once it expires`);
        }
      },
    };
  }
  throw new LockedError(`${subject} is locked (other processes kept taking the lock; try again)`);
}
