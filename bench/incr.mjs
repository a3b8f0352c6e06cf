#!/usr/bin/env node
// Incremental backups, measured in one run: after 1% of a device is rewritten, what does
// `bkp incr` cost next to `bkp full`, for several chunk sizes, with the CBT map and with the
// digest fallback (no change tracking: every chunk read and hashed) against a raw sequential read.
// The CBT map comes from the blksnap fake, or with --blksnap real from the real module (in the
// kernel lab's VM: bash bench/real-incr.sh), where the writes go straight to the device.
// Each incr reports the bytes the CBT map marked, the bytes bkp read and stored, and its time
// as a share of the full's on the same machine.
// Two write patterns: uniformly random 4 KiB writes (the worst case) and writes clustered in
// 256 KiB extents (what filesystems mostly do). Needs root. Build first (npm ci).
// Usage: node bench/incr.mjs [--size 1G] [--chunk-sizes 64K,256K,1M] [--dir bench/out/incr] [--blksnap fake|real]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { MiB, root, bkp, bkpWithFake, parseArgs, size, sh, dropCaches, timed, makeImage, du, machine } from './lib.mjs';
import { BlksnapFake } from '../dist/test/support/blksnap/fake.js';
import { Blksnap } from '../dist/src/blksnap/blksnap.js';
import { KernelDriver } from '../dist/src/blksnap/driver.js';

const args = parseArgs(process.argv.slice(2));
const SIZE = size(args.size ?? '1G');
const CHUNKS = (args['chunk-sizes'] ?? '64K,256K,1M').split(',');
const dir = args.dir ?? join(root, 'bench', 'out', 'incr');
const REAL = args.blksnap === 'real';

rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, 'diff'), { recursive: true });
const img = join(dir, 'source.img');
console.error(`making a ${SIZE / MiB} MiB image...`);
makeImage(img, SIZE);
const dev = sh(`losetup --find --show ${img}`);
const fakeDir = join(dir, 'fake');
const fake = REAL ? undefined : await BlksnapFake.open(fakeDir, {});
const env = REAL ? {} : { BKP_BLKSNAP_FAKE: fakeDir };

/** A write as an application makes it: through the fake (which tracks it), or to the device the real module tracks. */
async function write(at, data) {
  if (fake) return fake.write(dev, at, data);
  const fh = await open(dev, 'r+');
  try {
    await fh.write(data, 0, data.length, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
const diffArgs = `--diff-storage ${dir}/diff --diff-storage-limit 4G`;

/** Rewrites `share` of the device (tracked writes). */
async function churn(seed, share, extent) {
  const count = Math.round((SIZE * share) / extent);
  const slots = Math.floor(SIZE / extent);
  for (let i = 0; i < count; i++) {
    const h = createHash('sha256').update(`${seed}/${i}`).digest();
    const at = (h.readUInt32LE(0) % slots) * extent;
    const data = Buffer.alloc(extent);
    for (let j = 0; j < extent; j += 32) createHash('sha256').update(`${seed}/${i}/${j}`).digest().copy(data, j);
    await write(at, data);
  }
}

const results = { machine: machine(), blksnap: REAL ? 'real' : 'fake', size: SIZE, runs: [] };
try {
  dropCaches();
  const raw = timed(`dd if=${dev} of=/dev/null iflag=direct bs=4M status=none`, dir);
  results.runs.push({ what: 'dd iflag=direct bs=4M (raw sequential read)', secs: raw.secs, rss: raw.rss });
  for (const cs of CHUNKS) {
    const repo = join(dir, `repo-${cs}`);
    sh(`node ${bkp} init --repo ${repo} --chunk-size ${cs} --quiet`);
    dropCaches();
    const full = timed(`node ${bkpWithFake} full --device ${dev} --repo ${repo} ${diffArgs} --quiet --json`, dir, env);
    const fullStats = JSON.parse(full.stdout).devices[0].stats;
    results.runs.push({ what: `bkp full (chunk ${cs}, snapshot)`, secs: full.secs, rss: full.rss, bytesRead: fullStats.bytesRead, bytesStored: fullStats.bytesStored, indexBytes: SIZE / size(cs) * 56 });
    for (const [pattern, extent] of [['random 4 KiB', 4096], ['clustered 256 KiB', 256 * 1024]]) {
      await churn(`${cs}/${pattern}`, 0.01, extent);
      dropCaches();
      const inc = timed(`node ${bkpWithFake} incr --device ${dev} --repo ${repo} ${diffArgs} --quiet --json`, dir, env);
      const d = JSON.parse(inc.stdout).devices[0];
      results.runs.push({
        what: `bkp incr after 1% ${pattern} writes (chunk ${cs}, CBT)`,
        secs: inc.secs,
        rss: inc.rss,
        mode: d.method.mode,
        cbtMarked: d.method.cbtChangedBytes,
        bytesRead: d.stats.bytesRead,
        changed: d.method.changedBytes,
        bytesStored: d.stats.bytesStored,
        shareOfFull: inc.secs / full.secs,
      });
    }
    dropCaches();
    const dig = timed(`node ${bkp} incr --device ${dev} --repo ${repo} --no-snapshot --quiet --json`, dir);
    const dd = JSON.parse(dig.stdout).devices[0];
    results.runs.push({ what: `bkp incr digest fallback (chunk ${cs}, --no-snapshot)`, secs: dig.secs, rss: dig.rss, mode: dd.method.mode, bytesRead: dd.stats.bytesRead, bytesStored: dd.stats.bytesStored, ratioVsRawRead: raw.secs / dig.secs });
    results.runs.push({ what: `repository after these backups (chunk ${cs})`, stored: du(repo) });
    rmSync(repo, { recursive: true, force: true });
  }
} finally {
  if (fake) await fake.reload().catch(() => {});
  else {
    // the tracker this run made is not needed after it
    const b = new Blksnap(await KernelDriver.open());
    await b.removeTracker(await b.devIdOf(dev)).catch(() => {});
    await b.close();
  }
  sh(`losetup -d ${dev}`);
  rmSync(img, { force: true });
}
writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
const mb = (b) => (b === undefined ? '' : (b / MiB).toFixed(1));
console.log(`blksnap: ${results.blksnap}; device ${SIZE / MiB} MiB; ${results.machine.cpus} CPUs, kernel ${results.machine.kernel}`);
console.log('| run | time (s) | read (MiB) | CBT marked (MiB) | changed (MiB) | stored (MiB) | peak RSS (MiB) | ratio |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of results.runs) {
  const ratio = r.shareOfFull !== undefined ? `${(r.shareOfFull * 100).toFixed(1)}% of full` : r.ratioVsRawRead !== undefined ? `${r.ratioVsRawRead.toFixed(2)}x raw read` : '';
  console.log(`| ${r.what} | ${r.secs?.toFixed(2) ?? ''} | ${mb(r.bytesRead)} | ${mb(r.cbtMarked)} | ${mb(r.changed)} | ${mb(r.bytesStored ?? r.stored)} | ${mb(r.rss)} | ${ratio} |`);
}
