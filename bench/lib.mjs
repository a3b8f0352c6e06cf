// Shared pieces of the benchmarks: a disk-like image, timing with peak RSS, cache dropping.
import { execFileSync, spawnSync } from 'node:child_process';
import { openSync, writeSync, closeSync, ftruncateSync, readdirSync, statSync, rmSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as os from 'node:os';

export const MiB = 1024 * 1024;
export const root = new URL('..', import.meta.url).pathname;
export const bkp = join(root, 'bin', 'bkp.js');
// bkp with the tests' seams: BKP_BLKSNAP_FAKE=DIR runs it on the userspace blksnap fake (the
// product binary has no fake); everything else is the same CLI
export const bkpWithFake = join(root, 'dist', 'test', 'bin', 'bkp.js');

export function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) if (argv[i].startsWith('--')) out[argv[i].slice(2)] = argv[i + 1];
  return out;
}

export function size(s) {
  const units = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };
  return Number(s.replace(/[KMG]$/i, '')) * (units[s.slice(-1).toUpperCase()] ?? 1);
}

export const sh = (cmd, env) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8', env: env ? { ...process.env, ...env } : undefined }).trim();
// BKP_BENCH_DROP_CACHES: where drop_caches is when /proc is not procfs (the kernel lab's guest)
export const dropCaches = () => sh(`sync; echo 3 > ${process.env.BKP_BENCH_DROP_CACHES ?? '/proc/sys/vm/drop_caches'}`);

/** Runs a shell command under /usr/bin/time -v: wall seconds and peak RSS (largest process). */
export function timed(cmd, dir, env = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', `/usr/bin/time -v -o ${dir}/time.txt bash -c '${cmd.replace(/'/g, "'\\''")}'`], {
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
    env: { ...process.env, ...env },
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`);
  const tv = sh(`cat ${dir}/time.txt`);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(tv)?.[1] ?? 0) * 1024;
  return { secs, rss, stdout: r.stdout };
}

/** A disk-like image: 30% free space (zeros), 40% text/logs (compressible), 30% binaries (random). */
export function makeImage(path, bytes) {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  const words = 'error warning info backup restore kernel device sector chunk tracker snapshot the of and to a in'.split(' ');
  let x = 12345;
  const text = Buffer.from(Array.from({ length: 400000 }, () => words[(x = (x * 1103515245 + 12345) & 0x7fffffff) % words.length]).join(' ')).subarray(0, MiB);
  for (let o = 0, i = 0; o < bytes; o += MiB, i++) {
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
    writeSync(fd, buf, 0, Math.min(MiB, bytes - o), o);
  }
  closeSync(fd);
}

export const du = (p) => readdirSync(p, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).reduce((n, e) => n + statSync(join(e.parentPath ?? e.path, e.name)).size, 0);

export function machine() {
  return { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version, kernel: os.release() };
}

/** mulberry32, the seeded PRNG of the tests (built by tsc into dist/). */
export { mulberry32 } from '../dist/test/support/random.js';

/**
 * A fresh bench directory with a disk-like source image (makeImage) and an empty target image of
 * the same size, for restores.
 */
export function benchImages(dir, bytes) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const img = join(dir, 'source.img');
  const dstImg = join(dir, 'target.img');
  console.error(`making a ${bytes / MiB} MiB image...`);
  makeImage(img, bytes);
  const fd = openSync(dstImg, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
  return { img, dstImg };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
