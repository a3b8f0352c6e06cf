/** Durations as bkp prints them: 7d, 1d 3h, 1h 30m, 0m (for schedules and ages, not run times). */
export function fmtAge(ms: number): string {
  const m = Math.floor(ms / 60_000);
  const d = Math.floor(m / 1440);
  const h = Math.floor((m % 1440) / 60);
  if (d > 0) return `${d}d${h ? ` ${h}h` : ''}`;
  if (h > 0) return `${h}h${m % 60 ? ` ${m % 60}m` : ''}`;
  return `${m}m`;
}
