#!/usr/bin/env node
// bkp benchmark, one run on one machine, so that ratios compare like with like:
//   bkp full  vs  dd iflag=direct bs=4M | zstd -1 -T2   (read + compress the same device)
//   bkp restore  vs  dd bs=4M oflag=direct             (write the same bytes to a device)
// for a few chunk sizes and zstd levels. Needs root (loop devices, drop_caches).
// Usage: node bench/run.mjs [--size 1G] [--chunk-sizes 1M,4M] [--levels 1,3] [--dir bench/out]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, openSync, writeSync, closeSync, ftruncateSync, writeFileSync, statSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as os from 'node:os';

const root = new URL('..', import.meta.url).pathname;
const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const units = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };
const size = (s) => Number(s.replace(/[KMG]$/i, '')) * (units[s.slice(-1).toUpperCase()] ?? 1);
const SIZE = size(args.size ?? '1G');
const CHUNKS = (args['chunk-sizes'] ?? '1M,4M').split(',');
const LEVELS = (args.levels ?? '1,3').split(',').map(Number);
const dir = args.dir ?? join(root, 'bench', 'out');
const bkp = join(root, 'bin', 'bkp.js');
const MiB = 1024 * 1024;

const sh = (cmd) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8' }).trim();
const dropCaches = () => sh('sync; echo 3 > /proc/sys/vm/drop_caches');

/** Runs a shell command under /usr/bin/time -v: wall seconds and peak RSS (largest process). */
function timed(cmd) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', `/usr/bin/time -v -o ${dir}/time.txt bash -c '${cmd.replace(/'/g, "'\\''")}'`], { encoding: 'utf8', maxBuffer: 64 * MiB });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  const tv = sh(`cat ${dir}/time.txt`);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(tv)?.[1] ?? 0) * 1024;
  return { secs, rss, stdout: r.stdout };
}

function makeImage(path) {
  // disk-like: 30% free space (zeros), 40% text/logs (compressible), 30% binaries/media (random)
  const fd = openSync(path, 'w');
  ftruncateSync(fd, SIZE);
  const words = 'error warning info backup restore kernel device sector chunk tracker snapshot the of and to a in'.split(' ');
  let x = 12345;
  const text = Buffer.from(Array.from({ length: 400000 }, () => words[(x = (x * 1103515245 + 12345) & 0x7fffffff) % words.length]).join(' ')).subarray(0, MiB);
  for (let o = 0, i = 0; o < SIZE; o += MiB, i++) {
    const k = createHash('sha256').update(`bench${i}`).digest();
    const kind = k[0] % 10;
    if (kind < 3) continue;
    let buf;
    if (kind < 7) {
      buf = Buffer.from(text);
      k.copy(buf, (k[1] * 4096) % (MiB - 32)); // not all text blocks identical
    } else {
      buf = Buffer.alloc(MiB);
      for (let j = 0; j < MiB; j += 32) createHash('sha256').update(`${i}/${j}`).digest().copy(buf, j);
    }
    writeSync(fd, buf, 0, Math.min(MiB, SIZE - o), o);
  }
  closeSync(fd);
}

const du = (p) => readdirSync(p, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).reduce((n, e) => n + statSync(join(e.parentPath ?? e.path, e.name)).size, 0);

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const img = join(dir, 'source.img');
const dstImg = join(dir, 'target.img');
console.error(`making a ${SIZE / MiB} MiB image...`);
makeImage(img);
const dstFd = openSync(dstImg, 'w');
ftruncateSync(dstFd, SIZE);
closeSync(dstFd);
const src = sh(`losetup --find --show ${img}`);
const dst = sh(`losetup --find --show ${dstImg}`);
const results = { machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, mem: os.totalmem(), node: process.version, kernel: os.release() }, size: SIZE, runs: [] };
try {
  const srcHash = sh(`sha256sum ${src} | cut -d' ' -f1`);
  dropCaches();
  const base = timed(`dd if=${src} iflag=direct bs=4M status=none | zstd -1 -T2 -q -f -o ${dir}/baseline.zst`);
  results.runs.push({ what: 'dd iflag=direct bs=4M | zstd -1 -T2', secs: base.secs, stored: statSync(`${dir}/baseline.zst`).size, rss: base.rss });
  rmSync(`${dir}/baseline.zst`);
  sh(`cat ${img} > /dev/null`);
  const raw = timed(`dd if=${img} of=${dst} bs=4M oflag=direct conv=fsync status=none`);
  results.runs.push({ what: 'dd bs=4M oflag=direct (raw write)', secs: raw.secs, rss: raw.rss });

  for (const cs of CHUNKS) {
    for (const level of LEVELS) {
      const repo = join(dir, `repo-${cs}-${level}`);
      sh(`node ${bkp} init --repo ${repo} --chunk-size ${cs} --compression-level ${level} --quiet`);
      dropCaches();
      const full = timed(`node ${bkp} full --device ${src} --repo ${repo} --no-snapshot --quiet --json`);
      const stats = JSON.parse(full.stdout).devices[0].stats;
      results.runs.push({ what: `bkp full (chunk ${cs}, zstd ${level})`, secs: full.secs, stored: du(repo), rss: full.rss, ratioVsBaseline: base.secs / full.secs, stats });
      dropCaches();
      const rest = timed(`node ${bkp} restore --repo ${repo} --to ${dst} --force --quiet`);
      const ok = sh(`sha256sum ${dst} | cut -d' ' -f1`) === srcHash;
      results.runs.push({ what: `bkp restore (chunk ${cs}, zstd ${level})`, secs: rest.secs, rss: rest.rss, ratioVsRaw: raw.secs / rest.secs, byteEqual: ok });
      rmSync(repo, { recursive: true, force: true });
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
  const ratio = r.ratioVsBaseline ? `${r.ratioVsBaseline.toFixed(2)}x dd\\|zstd` : r.ratioVsRaw ? `${r.ratioVsRaw.toFixed(2)}x raw dd${r.byteEqual ? '' : ' MISMATCH'}` : '';
  console.log(`| ${r.what} | ${r.secs.toFixed(2)} | ${(SIZE / MiB / r.secs).toFixed(0)} | ${r.stored !== undefined ? mb(r.stored) : ''} | ${mb(r.rss)} | ${ratio} |`);
}
