/** The human summaries that more than one command prints (full/incr and run; prune and run), and verify's. */
import type { BackupRunResult } from '../backup/run-backup.js';
import type { PruneResult } from '../repo/prune.js';
import type { VerifyResult } from '../restore/verify.js';
import { fmtBytes, fmtDuration } from '../report/reporter.js';

export function backupLines(res: BackupRunResult): string[] {
  const lines = [`${res.kind} backup ${res.backupId}${res.snapshot ? ' (blksnap snapshot)' : ' (no snapshot)'}`];
  for (const d of res.devices) {
    if (!d.ok) {
      lines.push(`  ${d.device}: FAILED: ${d.error}`);
      continue;
    }
    const s = d.stats!;
    const rate = s.bytesRead / Math.max(0.001, s.durationMs / 1000);
    lines.push(
      `  ${d.device}: ${fmtBytes(s.bytesRead)} read, ${fmtBytes(s.bytesStored)} stored ` +
        `(${s.chunksNew} new, ${s.chunksReused} already stored, ${s.chunksZero} zero chunks) in ${fmtDuration(s.durationMs)}, ${fmtBytes(rate)}/s`,
    );
    if (d.damagedReread) {
      lines.push(`    ${d.damagedReread} chunk(s) of the previous backup lie in damaged pack(s): read again from the device and stored anew`);
    }
    const m = d.method!;
    if (m.mode === 'cbt') {
      lines.push(`    changed blocks from CBT: ${fmtBytes(m.cbtChangedBytes ?? 0)} marked, ${fmtBytes(s.bytesRead)} read, ${fmtBytes(m.changedBytes)} really changed`);
    } else if (m.mode === 'digest') {
      lines.push(`    digest comparison (${m.reason}): ${fmtBytes(m.changedBytes)} changed`);
    }
  }
  return lines;
}

export function pruneLines(r: PruneResult): string[] {
  const verb = r.dryRun ? 'would remove' : 'removed';
  return [
    ...r.keep.map((k) => `keep   ${k.backupId} ${k.deviceKey} (${k.reasons.join(', ')})`),
    ...r.remove.map((x) => `${r.dryRun ? 'would remove' : 'remove'} ${x.backupId} ${x.deviceKey}`),
    `${verb} ${r.remove.length} backup(s), kept ${r.keep.length}; ${verb} ${r.gc.packsRemoved} pack(s) (${fmtBytes(r.gc.bytesRemoved)}), repacked ${r.gc.packsRepacked}`,
  ];
}

/** Damage found: a backup that would not restore, or a pack whose trailer is damaged. */
export function verifyOk(r: VerifyResult): boolean {
  return r.backups.every((b) => b.ok) && r.packs.length === 0;
}

export function verifyLines(r: VerifyResult, readData: boolean): string[] {
  const bad = r.backups.filter((b) => !b.ok);
  const orphanBytes = r.unreferencedPacks.reduce((n, p) => n + p.size, 0);
  const unexplained = [
    ...(r.unreferencedPacks.length
      ? [`NOTE ${r.unreferencedPacks.length} pack(s) (${fmtBytes(orphanBytes)}) are referenced by no index: left by an interrupted backup, by a prune or gc that did not finish, or by a lost index; bkp gc deletes them (if an index was lost, restore it first)`]
      : []),
    ...r.backupsWithoutIndex.map((id) => `NOTE backups/${id}/ holds no index: the backup was removed by prune, or its index was lost`),
  ];
  const summary = bad.length || r.packs.length
    ? [bad.length ? `${bad.length} damaged backup(s)` : '', r.packs.length ? `${r.packs.length} damaged pack(s)` : ''].filter(Boolean).join(', ')
    : unexplained.length
      ? `the ${r.backups.length} index(es) present are undamaged, but ${unexplained.length} thing(s) no index explains (NOTE above)`
      : 'no damage found';
  return [
    `verified ${r.backups.length} backup index(es), ${r.packsChecked} pack(s)` +
      (readData ? `, ${r.chunksChecked} chunk(s), ${fmtBytes(r.bytesRead)} read` : ' (existence, size and trailer; --read-data checks content)') +
      (r.packsArchived ? `; ${r.packsArchived} pack(s) in an archive storage class: existence and size only` : '') +
      (r.rounds > 1 ? `; checked ${r.rounds} times: indexes changed meanwhile (a gc or prune ran)` : ''),
    ...bad.map((b) => `DAMAGED ${b.backupId} ${b.deviceKey}: ${b.problems.join('; ')}`),
    ...r.packs.map((p) => `DAMAGED pack ${p.packId}: ${p.problem} (backups restore from their indexes; recovery without an index needs the trailer)`),
    ...(r.damagedPacks.length
      ? [`${r.damagedPacks.length} damaged pack(s) recorded under damage/: new backups store their chunks anew; bkp repair heals what it can`]
      : []),
    ...unexplained,
    summary,
  ];
}
