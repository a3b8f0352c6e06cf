/** `bkp repair [--dry-run]`: heal damaged and missing packs (src/repo/repair.ts). */
import type { Argv, CommandModule } from 'yargs';
import { context, type GlobalArgs } from './context.js';
import { openTarget } from '../storage/open.js';
import { s3Options, s3OptionsFrom, type S3Args } from './s3-options.js';
import { Repository } from '../repo/repository.js';
import { acquireLock } from '../repo/lock.js';
import { repairRepository, type RepairResult } from '../repo/repair.js';
import { ExitCode } from '../errors.js';

type RepairArgs = GlobalArgs & S3Args & { repo?: string; 'dry-run': boolean };

export function repairLines(r: RepairResult): string[] {
  const would = (done: string, will: string) => (r.dryRun ? will : done);
  const lines: string[] = [];
  for (const p of r.packs) {
    lines.push(
      p.state === 'missing'
        ? `pack ${p.packId} is missing: ${p.damagedChunks} chunk(s) backups need were in it`
        : `${would('quarantined', 'would quarantine')} pack ${p.packId} as ${p.quarantinedAs} (${p.damagedChunks} damaged chunk(s), ${p.intactChunks} intact)`,
    );
  }
  for (const p of r.packsCleared) lines.push(`pack ${p} reads back intact or no backup needs it: its damage record ${would('was', 'would be')} removed`);
  if (r.packs.length) {
    lines.push(
      `${would('re-pointed', 'would re-point')} ${r.chunksRepointed} chunk(s) at intact copies, ${would('copied', 'would copy')} ${r.chunksCopied} intact chunk(s) out of damaged packs, ${would('rewrote', 'would rewrite')} ${r.indexesRewritten} index(es)`,
    );
  }
  for (const i of r.unreadableIndexes) lines.push(`DAMAGED INDEX ${i.backupId} ${i.deviceKey}: ${i.problem} (repair cannot rebuild an index)`);
  for (const u of r.unrecoverable) {
    for (const d of u.ranges) lines.push(`UNRECOVERABLE ${u.backupId} ${u.deviceKey}: device bytes ${d.offset}-${d.offset + d.length - 1}: ${d.problem}`);
  }
  if (r.packs.length === 0 && r.packsCleared.length === 0 && r.unreadableIndexes.length === 0) lines.push('nothing to repair: no damage recorded and no pack missing');
  else if (r.healed) lines.push(r.dryRun ? 'everything would be healed' : 'everything healed');
  else lines.push(`${r.unrecoverable.length + r.unreadableIndexes.length} backup(s) ${would('keep', 'would keep')} damage that no intact copy can heal`);
  return lines;
}

export const repair: CommandModule<GlobalArgs, RepairArgs> = {
  command: 'repair',
  describe: 'heal damaged and missing packs: re-point backups at intact copies, quarantine damaged packs, list what is lost',
  builder: (y: Argv) =>
    s3Options(
      y.option('repo', {
        type: 'string',
        describe: 'repository: a local directory or s3://BUCKET/PREFIX (or set BKP_REPO)',
        default: process.env.BKP_REPO,
        defaultDescription: '$BKP_REPO',
      }),
    ).option('dry-run', { type: 'boolean', default: false, describe: 'only say what would be done (reads and checks the same)' }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const target = await openTarget(a.repo, s3OptionsFrom(a));
    const repo = await Repository.open(target);
    const lock = await acquireLock(target, `bkp repair${a['dry-run'] ? ' --dry-run' : ''}`, (m) => ctx.reporter.warn(m));
    let r: RepairResult;
    try {
      r = await repairRepository(repo, { dryRun: a['dry-run'], checkLock: () => lock.assertHeld() });
    } finally {
      await lock.release();
    }
    ctx.out(repairLines(r).join('\n'), { command: 'repair', ...r });
    if (!r.healed) process.exitCode = ExitCode.PARTIAL;
  },
};
