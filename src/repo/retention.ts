/**
 * Pure retention planning (`bkp prune`): which backups a policy keeps, per device, and why.
 * Semantics as restic's: --keep-last N keeps the N newest; --keep-hourly/daily/weekly/monthly N
 * keeps the newest backup of each of the N most recent hours/days/ISO weeks/months that have
 * one. Periods are calendar periods in UTC. A backup kept by any rule is kept.
 */

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
}

export interface RetentionItem {
  backupId: string;
  deviceKey: string;
  time: Date;
}

export interface RetentionDecision<T extends RetentionItem> {
  keep: Array<{ item: T; reasons: string[] }>;
  remove: T[];
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of this week decides its year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

const PERIODS: Array<[keyof RetentionPolicy, string, (d: Date) => string]> = [
  ['hourly', 'hourly', (d) => d.toISOString().slice(0, 13)],
  ['daily', 'daily', (d) => d.toISOString().slice(0, 10)],
  ['weekly', 'weekly', isoWeek],
  ['monthly', 'monthly', (d) => d.toISOString().slice(0, 7)],
];

export function hasRule(p: RetentionPolicy): boolean {
  return Object.values(p).some((v) => v !== undefined && v > 0);
}

export function planRetention<T extends RetentionItem>(items: readonly T[], policy: RetentionPolicy): RetentionDecision<T> {
  const byDevice = new Map<string, T[]>();
  for (const it of items) {
    const l = byDevice.get(it.deviceKey) ?? [];
    l.push(it);
    byDevice.set(it.deviceKey, l);
  }
  const keep: RetentionDecision<T>['keep'] = [];
  const remove: T[] = [];
  for (const list of byDevice.values()) {
    // newest first; ties broken by id so the result does not depend on input order
    const sorted = [...list].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.backupId < b.backupId ? 1 : -1));
    const reasons = new Map<T, string[]>();
    const add = (it: T, why: string) => reasons.set(it, [...(reasons.get(it) ?? []), why]);
    sorted.slice(0, policy.last ?? 0).forEach((it, i) => add(it, `last ${i + 1}`));
    for (const [key, name, bucket] of PERIODS) {
      const n = policy[key] ?? 0;
      const seen = new Set<string>();
      for (const it of sorted) {
        if (seen.size >= n) break;
        const b = bucket(it.time);
        if (seen.has(b)) continue;
        seen.add(b);
        add(it, `${name} ${b}`);
      }
    }
    for (const it of sorted) {
      const r = reasons.get(it);
      if (r) keep.push({ item: it, reasons: r });
      else remove.push(it);
    }
  }
  return { keep, remove };
}
