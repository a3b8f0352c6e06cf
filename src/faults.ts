/**
 * Crash points for the crash tests: with BKP_CRASH_AT=NAME (or NAME:N) the process kills itself
 * with SIGKILL the N-th time (default 1st) it passes the point NAME — e.g. just before an index
 * commit, which a timer could only hit by luck. Without the variable this is one string compare.
 */
const spec = process.env.BKP_CRASH_AT;
const [target, nth] = spec ? [spec.split(':')[0], Number(spec.split(':')[1] ?? 1)] : [undefined, 0];
let seen = 0;

export function crashPoint(name: string): void {
  if (name !== target) return;
  if (++seen >= nth) process.kill(process.pid, 'SIGKILL');
}

/**
 * Pause points for tests that must act at an exact moment (write to a device while its snapshot
 * is being read, send a signal mid-backup): with BKP_PAUSE_AT=NAME:FILE the process creates
 * FILE.reached when it gets to NAME and waits until FILE.reached is removed.
 */
const pauseSpec = process.env.BKP_PAUSE_AT;

export async function pausePoint(name: string): Promise<void> {
  if (!pauseSpec) return;
  const i = pauseSpec.indexOf(':');
  if (pauseSpec.slice(0, i) !== name) return;
  const { writeFileSync, existsSync } = await import('node:fs');
  const flag = `${pauseSpec.slice(i + 1)}.reached`;
  writeFileSync(flag, String(process.pid));
  while (existsSync(flag)) await new Promise((r) => setTimeout(r, 20));
}
