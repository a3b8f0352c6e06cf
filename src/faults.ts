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
