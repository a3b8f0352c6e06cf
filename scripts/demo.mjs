#!/usr/bin/env node
// The README's first command runs this: it links bkp into PATH, then runs bkp's main job on the embedded default — a local
// directory repository (demo/repo) and, without the blksnap module, an image file read with
// --no-snapshot. It makes a 256 MiB disk-like image, backs it up, restores it and compares.
import { existsSync, mkdirSync, openSync, writeSync, closeSync, ftruncateSync, createReadStream } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'demo');
const img = join(dir, 'disk.img');
const repo = join(dir, 'repo');
const out = join(dir, 'restored.img');
const MiB = 1024 * 1024;

function bkp(...args) {
  console.log(`$ bkp ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [join(root, 'bin', 'bkp.js'), ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function sha256(path) {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (d) => h.update(d)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}

// first, bkp on PATH (scripts/install-bin.mjs: /usr/local/bin/bkp as root, else ~/.local/bin/bkp)
spawnSync(process.execPath, [join(root, 'scripts', 'install-bin.mjs')], { stdio: 'inherit' });

mkdirSync(dir, { recursive: true });
if (!existsSync(img)) {
  // a disk-like image: free space (zeros), text, binaries (random), repeated blocks
  const fd = openSync(img, 'w');
  ftruncateSync(fd, 256 * MiB);
  const text = Buffer.from('the quick brown fox jumps over the lazy dog; backup, restore, verify.\n'.repeat(16000)).subarray(0, MiB);
  for (let i = 0; i < 256; i++) {
    const k = createHash('sha256').update(String(i)).digest()[0] % 4;
    if (k === 0) continue; // zeros
    writeSync(fd, k === 1 ? randomBytes(MiB) : text, 0, MiB, i * MiB);
  }
  closeSync(fd);
}
if (!existsSync(join(repo, 'config'))) bkp('init', '--repo', repo);
bkp('full', '--device', img, '--repo', repo, '--no-snapshot');
bkp('list', '--repo', repo);
bkp('restore', '--repo', repo, '--device', img, '--to', out, '--force');
bkp('verify', '--repo', repo, '--read-data');
const [a, b] = await Promise.all([sha256(img), sha256(out)]);
console.log(`source   ${a}\nrestored ${b}\n${a === b ? 'byte-equal: OK' : 'MISMATCH'}`);
process.exit(a === b ? 0 : 1);
