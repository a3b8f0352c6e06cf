#!/usr/bin/env node
// bkp full and restore, against the physical baselines, in one run on one machine:
//   bkp full     vs  dd iflag=direct bs=4M | zstd -1 -T2   (read + compress the same device)
//   bkp restore  vs  dd bs=4M oflag=direct                 (write the same bytes to a device)
// for a few chunk sizes and zstd levels. Needs root (loop devices, drop_caches).
// Usage: node bench/run.mjs [--size 1G] [--chunk-sizes 1M,4M] [--levels 1,3] [--repeat 3] [--dir bench/out/full]
import { rmSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, root, bkp, parseArgs, size, sh, dropCaches, timed, du, machine, benchImages } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const SIZE = size(args.size ?? '1G');
const CHUNKS = (args['chunk-sizes'] ?? '1M,4M').split(',');
const LEVELS = (args.levels ?? '1,3').split(',').map(Number);
const dir = args.dir ?? join(root, 'bench', 'out', 'full');

const { img, dstImg } = benchImages(dir, SIZE);
const src = sh(`losetup --find --show ${img}`);
const dst = sh(`losetup --find --show ${dstImg}`);
const REPEAT = Number(args.repeat ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { machine: machine(), size: SIZE, repeat: REPEAT, runs: [] };
try {
  const srcHash = sh(`sha256sum ${src} | cut -d' ' -f1`);
  // Each bkp run is paired with its baseline run right before it, and each pair is repeated:
  // the machine is noisy, a ratio of neighbours is not.
  const baseline = () => {
    dropCaches();
    const r = timed(`dd if=${src} iflag=direct bs=4M status=none | zstd -1 -T2 -q -f -o ${dir}/baseline.zst`, dir);
    r.stored = statSync(`${dir}/baseline.zst`).size;
    rmSync(`${dir}/baseline.zst`);
    return r;
  };
  const rawWrite = () => {
    dropCaches(); // like a restore, which reads its repository from disk
    return timed(`dd if=${img} of=${dst} bs=4M oflag=direct conv=fsync status=none`, dir);
  };
  for (const cs of CHUNKS) {
    for (const level of LEVELS) {
      const pairs = { base: [], full: [], raw: [], rest: [], fullRatio: [], restRatio: [], fullRss: [], restRss: [] };
      let stored = 0;
      let equal = true;
      for (let i = 0; i < REPEAT; i++) {
        const repo = join(dir, `repo-${cs}-${level}`);
        rmSync(repo, { recursive: true, force: true });
        sh(`node ${bkp} init --repo ${repo} --chunk-size ${cs} --compression-level ${level} --quiet`);
        const b = baseline();
        dropCaches();
        const full = timed(`node ${bkp} full --device ${src} --repo ${repo} --no-snapshot --quiet --json`, dir);
        stored = du(repo);
        const raw = rawWrite();
        dropCaches();
        const rest = timed(`node ${bkp} restore --repo ${repo} --to ${dst} --force --quiet`, dir);
        equal &&= sh(`sha256sum ${dst} | cut -d' ' -f1`) === srcHash;
        pairs.base.push(b.secs);
        pairs.full.push(full.secs);
        pairs.raw.push(raw.secs);
        pairs.rest.push(rest.secs);
        pairs.fullRatio.push(b.secs / full.secs);
        pairs.restRatio.push(raw.secs / rest.secs);
        pairs.fullRss.push(full.rss);
        pairs.restRss.push(rest.rss);
        rmSync(repo, { recursive: true, force: true });
      }
      results.runs.push({ what: `dd iflag=direct bs=4M \\| zstd -1 -T2 (paired with the next row)`, secs: median(pairs.base), rss: 0 });
      results.runs.push({ what: `bkp full (chunk ${cs}, zstd ${level})`, secs: median(pairs.full), stored, rss: Math.max(...pairs.fullRss), ratioVsBaseline: median(pairs.fullRatio), all: pairs.fullRatio });
      results.runs.push({ what: `dd bs=4M oflag=direct, raw write (paired with the next row)`, secs: median(pairs.raw), rss: 0 });
      results.runs.push({ what: `bkp restore (chunk ${cs}, zstd ${level})`, secs: median(pairs.rest), rss: Math.max(...pairs.restRss), ratioVsRaw: median(pairs.restRatio), all: pairs.restRatio, byteEqual: equal });
    }
  }
} finally {
  sh(`losetup -d ${src}; losetup -d ${dst}`);
  rmSync(img, { force: true });
  rmSync(dstImg, { force: true });
}
writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
const mb = (b) => (b / MiB).toFixed(0);
console.log(`| run | time (s) | MiB/s | stored (MiB) | peak RSS (MiB) | ratio |`);
console.log(`|---|---:|---:|---:|---:|---:|`);
for (const r of results.runs) {
  const each = r.all ? ` (runs: ${r.all.map((x) => x.toFixed(2)).join(', ')})` : '';
  const ratio = r.ratioVsBaseline ? `${r.ratioVsBaseline.toFixed(2)}x dd\\|zstd${each}` : r.ratioVsRaw ? `${r.ratioVsRaw.toFixed(2)}x raw dd${each}${r.byteEqual ? '' : ' MISMATCH'}` : '';
  console.log(`| ${r.what} | ${r.secs.toFixed(2)} | ${(SIZE / MiB / r.secs).toFixed(0)} | ${r.stored !== undefined ? mb(r.stored) : ''} | ${r.rss ? mb(r.rss) : ''} | ${ratio} |`);
}
