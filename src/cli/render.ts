/** The human summaries that more than one command prints (full/incr and run; prune and run). */
import type { BackupRunResult } from '../backup/run-backup.js';
import type { PruneResult } from '../repo/prune.js';
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
