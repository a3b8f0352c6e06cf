/** `bkp status` and `bkp snapshot cleanup` (the group is in commands.ts): what the blksnap module holds, and removing bkp's leftovers. */
import type { Argv, CommandModule } from 'yargs';
import { context, type GlobalArgs } from './context.js';
import { openBlksnap, removeStaleDiffFiles, formatUuid, devKey, blockDeviceInfo, planSnapshotCleanup, type DevId } from '../blksnap/index.js';
import { fmtBytes } from '../report/reporter.js';
import { promises as fs } from 'node:fs';

type StatusArgs = GlobalArgs & { 'blksnap-device'?: string };
type CleanupArgs = StatusArgs & { 'diff-storage': string; all: boolean };

const moduleOption = (y: Argv) => y.option('blksnap-device', { type: 'string', describe: 'blksnap control device (default /dev/blksnap, else /dev/veeamblksnap)' });

async function nameOf(dev: DevId): Promise<string> {
  const info = await blockDeviceInfo(dev).catch(() => undefined);
  return info ? `${info.path} (${devKey(dev)})` : devKey(dev);
}

export const status: CommandModule<GlobalArgs, StatusArgs> = {
  command: 'status',
  describe: 'show the blksnap module: version, trackers (change tracking) and snapshots',
  builder: (y) => moduleOption(y) as never,
  handler: async (a) => {
    const ctx = context(a);
    const blksnap = await openBlksnap({ controlDevice: a['blksnap-device'] });
    try {
      const v = await blksnap.version();
      const trackers = await blksnap.trackers();
      const snapshots = [];
      for (const id of await blksnap.snapshots()) {
        const images = await blksnap.snapshot(id).images().catch(() => null);
        snapshots.push({ id: formatUuid(id), taken: images !== null, images: images ?? [] });
      }
      const data = {
        command: 'status',
        module: { control: blksnap.driver.controlPath, version: `${v.major}.${v.minor}.${v.revision}.${v.build}` },
        trackers: await Promise.all(
          trackers.map(async (t) => ({
            device: await nameOf(t.dev),
            blockSize: t.blkSize,
            blockCount: t.blkCount,
            capacity: t.deviceCapacity,
            generationId: t.generationId,
            snapNumber: t.snapNumber,
          })),
        ),
        snapshots: await Promise.all(
          snapshots.map(async (s) => ({
            id: s.id,
            taken: s.taken,
            images: await Promise.all(s.images.map(async (im) => ({ original: await nameOf(im.orig), image: blksnap.driver.imagePath(im.image) }))),
          })),
        ),
      };
      const lines = [`blksnap ${data.module.version} at ${data.module.control}`, `trackers: ${data.trackers.length}`];
      for (const t of data.trackers) {
        lines.push(`  ${t.device}: ${fmtBytes(t.capacity)}, CBT blocks ${fmtBytes(t.blockSize)} x ${t.blockCount}, generation ${t.generationId}, snapshot number ${t.snapNumber}`);
      }
      lines.push(`snapshots: ${data.snapshots.length}`);
      for (const s of data.snapshots) {
        lines.push(`  ${s.id}${s.taken ? '' : ' (not taken)'}`);
        for (const im of s.images) lines.push(`    ${im.original} → ${im.image}`);
      }
      ctx.out(lines.join('\n'), data);
    } finally {
      await blksnap.close();
    }
  },
};

export const snapshotCleanup: CommandModule<GlobalArgs, CleanupArgs> = {
  command: 'cleanup',
  describe: "destroy snapshots left by a bkp that crashed (those whose difference storage is in --diff-storage), and remove their files",
  builder: (y) =>
    moduleOption(y)
      .option('diff-storage', { type: 'string', default: '/var/lib/bkp/diff-storage', describe: 'the difference storage directory bkp uses' })
      .option('all', { type: 'boolean', default: false, describe: "also destroy snapshots that are not bkp's (other tools' backups will fail)" }) as never,
  handler: async (a) => {
    const ctx = context(a);
    const blksnap = await openBlksnap({ controlDevice: a['blksnap-device'] });
    try {
      const plan = await planSnapshotCleanup(blksnap, a['diff-storage'], a.all);
      const destroyed: string[] = [];
      const kept = plan.keep.map(formatUuid);
      for (const id of plan.destroy) {
        await blksnap.snapshot(id).destroy();
        destroyed.push(formatUuid(id));
      }
      const live = (await blksnap.snapshots()).filter((id) => !destroyed.includes(formatUuid(id)));
      const removed = await removeStaleDiffFiles(a['diff-storage'], live);
      for (const m of plan.staleMarkers) {
        await fs.rm(m.path, { force: true });
        removed.push(m.path);
      }
      ctx.out(
        [
          `destroyed ${destroyed.length} snapshot(s)${destroyed.length ? `: ${destroyed.join(', ')}` : ''}`,
          `removed ${removed.length} difference storage file(s)`,
          ...(kept.length ? [`left ${kept.length} snapshot(s) that are not bkp's: ${kept.join(', ')} (--all destroys them too)`] : []),
        ].join('\n'),
        { command: 'snapshot cleanup', destroyed, removedFiles: removed, kept },
      );
    } finally {
      await blksnap.close();
    }
  },
};
