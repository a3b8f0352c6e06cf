/**
 * One writer per repository: backups, gc and prune hold the `lock` object while they change the
 * repository. Readers (list, restore, verify) take no lock. A lock left by a process that died on
 * this host is taken over with a warning.
 */
import * as os from 'node:os';
import { ObjectExistsError, ObjectMissingError, type Target } from '../storage/target.js';
import { LockedError } from '../errors.js';

export const LOCK_KEY = 'lock';

export interface LockInfo {
  host: string;
  pid: number;
  startedAt: string;
  command: string;
}

export interface RepoLock {
  info: LockInfo;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function acquireLock(target: Target, command: string, warn: (msg: string) => void): Promise<RepoLock> {
  const info: LockInfo = { host: os.hostname(), pid: process.pid, startedAt: new Date().toISOString(), command };
  const body = Buffer.from(JSON.stringify(info) + '\n');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await target.put(LOCK_KEY, body, { ifAbsent: true });
      let released = false;
      return {
        info,
        release: async () => {
          if (released) return;
          released = true;
          await target.delete(LOCK_KEY);
        },
      };
    } catch (e) {
      if (!(e instanceof ObjectExistsError)) throw e;
    }
    let holder: LockInfo | undefined;
    try {
      holder = JSON.parse((await target.get(LOCK_KEY)).toString('utf8')) as LockInfo;
    } catch (e) {
      if (e instanceof ObjectMissingError) continue; // released meanwhile: try again
      holder = undefined; // unreadable lock: treat as held by an unknown process
    }
    if (holder && holder.host === info.host && !alive(holder.pid)) {
      warn(`taking over a stale lock of pid ${holder.pid} (${holder.command}, started ${holder.startedAt}), which is no longer running`);
      await target.delete(LOCK_KEY);
      continue;
    }
    const who = holder ? `pid ${holder.pid} on ${holder.host} since ${holder.startedAt} (${holder.command})` : 'an unknown process (the lock object is unreadable)';
    throw new LockedError(`repository ${target.location} is locked by ${who}`);
  }
  throw new LockedError(`repository ${target.location} is locked (could not take the lock after 3 tries)`);
}
