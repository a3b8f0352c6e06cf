#!/usr/bin/env node
// CPU profiles of the hot paths: `bkp full --no-snapshot` and `bkp restore` of a disk-like image
// (bench/lib.mjs makeImage) on loop devices, each run under `node --cpu-prof` (the main thread and
// every codec worker write a .cpuprofile), then a summary per thread: where the samples went
// (self time by function), and how much of the thread's time was idle.
// Usage: node bench/profile.mjs [--size 1G] [--chunk-size 1M] [--level 3] [--dir bench/out/profile] [--top 15]
// Open the .cpuprofile files in Chrome DevTools (Performance tab) or speedscope for flame graphs.
import { mkdirSync, rmSync, openSync, closeSync, ftruncateSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MiB, root, bkp, parseArgs, size, sh, dropCaches, timed, makeImage } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const SIZE = size(args.size ?? '1G');
const dir = resolve(args.dir ?? join(root, 'bench', 'out', 'profile'));
const TOP = Number(args.top ?? 15);

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const img = join(dir, 'source.img');
const dstImg = join(dir, 'target.img');
makeImage(img, SIZE);
const fd = openSync(dstImg, 'w');
ftruncateSync(fd, SIZE);
closeSync(fd);
const loops = [];
const release = () => {
  for (const l of loops.splice(0)) sh(`losetup -d ${l}`);
};
process.on('SIGINT', () => {
  release();
  process.exit(130);
});

/** Self time per function of one .cpuprofile, and the thread's idle share. */
function summarise(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = p.timeDeltas;
  let total = 0;
  p.samples.forEach((id, i) => {
    const n = byId.get(id);
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    const t = dt[i + 1] ?? 0;
    self.set(key, (self.get(key) ?? 0) + t);
    total += t;
  });
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP);
  return { total, idle: self.get('(idle)') ?? 0, top };
}

try {
  const src = sh(`losetup --find --show ${img}`);
  loops.push(src);
  const dst = sh(`losetup --find --show ${dstImg}`);
  loops.push(dst);
  const repo = join(dir, 'repo');
  sh(`node ${bkp} init --repo ${repo} --chunk-size ${args['chunk-size'] ?? '1M'} --compression-level ${args.level ?? 3} --quiet`);
  for (const [name, cmd] of [
    ['full', `full --device ${src} --repo ${repo} --no-snapshot --quiet`],
    ['restore', `restore --repo ${repo} --to ${dst} --force --quiet`],
  ]) {
    const out = join(dir, name);
    mkdirSync(out);
    dropCaches();
    const r = timed(`node --cpu-prof --cpu-prof-dir=${out} ${bkp} ${cmd}`, dir);
    console.log(`\n## ${name}: ${r.secs.toFixed(2)} s wall (${(SIZE / MiB / r.secs).toFixed(0)} MiB/s, profiled), peak RSS ${(r.rss / MiB).toFixed(0)} MiB`);
    const files = readdirSync(out).filter((f) => f.endsWith('.cpuprofile')).sort();
    for (const f of files) {
      const s = summarise(join(out, f));
      console.log(`\n${name}/${f}: ${(s.total / 1000).toFixed(0)} ms sampled, idle ${((100 * s.idle) / s.total).toFixed(0)}%`);
      for (const [k, t] of s.top) console.log(`  ${(t / 1000).toFixed(0).padStart(6)} ms ${((100 * t) / s.total).toFixed(1).padStart(5)}%  ${k}`);
    }
  }
} finally {
  release();
  rmSync(img, { force: true });
  rmSync(dstImg, { force: true });
}
