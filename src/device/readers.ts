/**
 * Is a device (or image file) being read by a running bkp backup? A backup without a snapshot
 * (`--no-snapshot`) holds the device open for its whole run: look for a `bkp full|incr|run`
 * process with a descriptor on it, in /proc. (Through blksnap, the snapshot itself says so:
 * src/restore/target-guard.ts.)
 */
import { promises as fs, type BigIntStats } from 'node:fs';

/** argv of a bkp backup: `…/bkp[.js] full|incr|run …`. */
function isBackup(argv: readonly string[]): boolean {
  const i = argv.findIndex((a) => /(^|\/)bkp(\.js)?$/.test(a));
  return i >= 0 && ['full', 'incr', 'run'].includes(argv[i + 1] ?? '');
}

function same(a: BigIntStats, b: BigIntStats): boolean {
  return a.isBlockDevice() ? b.isBlockDevice() && a.rdev === b.rdev : a.dev === b.dev && a.ino === b.ino;
}

/** Why `path` is being backed up right now (the process), or null. */
export async function backupReading(path: string): Promise<string | null> {
  const want = await fs.stat(path, { bigint: true }).catch(() => null);
  if (!want) return null;
  for (const pid of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    if (!isBackup(argv)) continue;
    for (const fd of await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const st = await fs.stat(`/proc/${pid}/fd/${fd}`, { bigint: true }).catch(() => null);
      if (st && same(want, st)) {
        const i = argv.findIndex((a) => /(^|\/)bkp(\.js)?$/.test(a));
        return `it is being backed up (pid ${pid}: bkp ${argv.slice(i + 1).join(' ')})`;
      }
    }
  }
  return null;
}
