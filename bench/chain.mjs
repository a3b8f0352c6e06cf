#!/usr/bin/env node
// A long chain of incrementals: one full, then N incrementals (CBT through the blksnap fake), each
// after `--churn` of the device rewritten as uniformly random 4 KiB writes (the worst case for
// change tracking). Reports per backup: bytes read, CBT-marked, stored, time, index size and peak
// RSS; then restores the last backup onto a loop device against a raw sequential write of the
// same image (dd oflag=direct), and checks it byte for byte. Needs root. Build first (npm ci).
// Usage: node bench/chain.mjs [--size 1G] [--incrementals 30] [--churn 0.01] [--chunk-size 1M]
//        [--dir bench/out/chain]
import { mkdirSync, rmSync, writeFileSync, statSync, openSync, closeSync, ftruncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { MiB, root, bkp, bkpWithFake, parseArgs, size, sh, dropCaches, timed, makeImage, machine } from './lib.mjs';
import { BlksnapFake } from '../dist/test/support/blksnap/fake.js';

const args = parseArgs(process.argv.slice(2));
const SIZE = size(args.size ?? '1G');
const N = Number(args.incrementals ?? 30);
const CHURN = Number(args.churn ?? 0.01);
const CHUNK = args['chunk-size'] ?? '1M';
const dir = args.dir ?? join(root, 'bench', 'out', 'chain');

rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, 'diff'), { recursive: true });
const img = join(dir, 'source.img');
const dstImg = join(dir, 'target.img');
console.error(`making a ${SIZE / MiB} MiB image...`);
makeImage(img, SIZE);
const fd = openSync(dstImg, 'w');
ftruncateSync(fd, SIZE);
closeSync(fd);
const dev = sh(`losetup --find --show ${img}`);
const dst = sh(`losetup --find --show ${dstImg}`);
const fake = await BlksnapFake.open(join(dir, 'fake'), {});
const env = { BKP_BLKSNAP_FAKE: join(dir, 'fake') };
const repo = join(dir, 'repo');
const diffArgs = `--diff-storage ${dir}/diff --diff-storage-limit 4G`;

/** `share` of the device rewritten as random 4 KiB blocks, through the fake (so CBT sees them). */
async function churn(round) {
  const count = Math.round((SIZE * CHURN) / 4096);
  for (let i = 0; i < count; i++) {
    const h = createHash('sha256').update(`chain/${round}/${i}`).digest();
    const at = (h.readUInt32LE(0) % (SIZE / 4096)) * 4096;
    const data = Buffer.alloc(4096);
    for (let j = 0; j < 4096; j += 32) createHash('sha256').update(`${round}/${i}/${j}`).digest().copy(data, j);
    await fake.write(dev, at, data);
  }
}

const indexBytes = (id) => {
  const d = join(repo, 'backups', id);
  return statSync(join(d, sh(`ls ${d}`))).size;
};

const rows = [];
let last;
try {
  sh(`node ${bkp} init --repo ${repo} --chunk-size ${CHUNK} --quiet`);
  for (let k = 0; k <= N; k++) {
    if (k > 0) await churn(k);
    dropCaches();
    const kind = k === 0 ? 'full' : 'incr';
    const r = timed(`node ${bkpWithFake} ${kind} --device ${dev} --repo ${repo} ${diffArgs} --quiet --json`, dir, env);
    const out = JSON.parse(r.stdout);
    const d = out.devices[0];
    if (k > 0 && d.method.mode !== 'cbt') throw new Error(`incremental ${k} did not use CBT: ${JSON.stringify(d.method)}`);
    last = out.backupId;
    rows.push({ k, kind, secs: r.secs, rss: r.rss, read: d.stats.bytesRead, marked: d.method?.cbtChangedBytes, stored: d.stats.bytesStored, index: indexBytes(last) });
    console.error(`${kind} ${k}: ${r.secs.toFixed(2)} s, read ${(d.stats.bytesRead / MiB).toFixed(1)} MiB, stored ${(d.stats.bytesStored / MiB).toFixed(1)} MiB, index ${indexBytes(last)} B`);
  }
  const want = sh(`sha256sum ${dev} | cut -d' ' -f1`);
  // the restore of the last backup against a raw sequential write of the same bytes
  dropCaches();
  const raw = timed(`dd if=${img} of=${dst} bs=4M oflag=direct status=none`, dir);
  sh(`blkdiscard ${dst} 2>/dev/null || dd if=/dev/zero of=${dst} bs=4M oflag=direct status=none`);
  dropCaches();
  const res = timed(`node ${bkp} restore --repo ${repo} --backup ${last} --to ${dst} --force --quiet`, dir);
  const got = sh(`sha256sum ${dst} | cut -d' ' -f1`);
  if (got !== want) throw new Error('the restored device differs from the source');
  const first = rows[0];
  const lastRow = rows[rows.length - 1];
  const peakIncr = Math.max(...rows.slice(1).map((r) => r.rss));
  const results = {
    machine: machine(),
    command: ['node bench/chain.mjs', ...process.argv.slice(2)].join(' '),
    size: SIZE,
    rows,
    restore: { secs: res.secs, rss: res.rss, rawWriteSecs: raw.secs, vsRawWrite: raw.secs / res.secs, byteEqual: true },
    indexGrowth: lastRow.index / first.index,
    rssGrowth: peakIncr / first.rss,
  };
  writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
  const mb = (b) => (b === undefined ? '' : (b / MiB).toFixed(1));
  console.log(`Command: \`${results.command}\`; ${SIZE / MiB} MiB device, ${N} incrementals of ${CHURN * 100}% random 4 KiB writes.`);
  console.log('');
  console.log('| backup | time (s) | read (MiB) | CBT marked (MiB) | stored (MiB) | index (KiB) | peak RSS (MiB) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.kind} ${r.k} | ${r.secs.toFixed(2)} | ${mb(r.read)} | ${mb(r.marked)} | ${mb(r.stored)} | ${(r.index / 1024).toFixed(0)} | ${mb(r.rss)} |`);
  console.log('');
  console.log(`Restore of the last backup: ${res.secs.toFixed(2)} s, raw write ${raw.secs.toFixed(2)} s: ${results.restore.vsRawWrite.toFixed(2)}x a raw write (byte-equal). Index of the last backup ${results.indexGrowth.toFixed(2)}x the first's; peak RSS of the incrementals ${results.rssGrowth.toFixed(2)}x the full's.`);
} finally {
  await fake.reload().catch(() => {});
  sh(`losetup -d ${dev}; losetup -d ${dst}`);
  rmSync(img, { force: true });
  rmSync(dstImg, { force: true });
}
