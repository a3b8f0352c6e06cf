#!/usr/bin/env node
// bkp with an S3 repository against the same with a local directory, in one run on one machine:
//   bkp full to S3 (a local Ceph RADOS Gateway)   vs  bkp full to a local directory   (same device)
//   bkp restore from S3, parallel ranged GETs      vs  one GET at a time (--s3-concurrency 1)
// with the requests each run made. Needs root (loop devices, drop_caches) and Ceph's packages
// (apt-get install radosgw ceph-mon ceph-osd).
// Usage: node bench/s3.mjs [--size 1G] [--repeat 2] [--concurrency 8] [--dir bench/out/s3]
import { rmSync, writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { MiB, root, bkp, parseArgs, size, sh, dropCaches, timed, du, machine, benchImages } from './lib.mjs';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const args = parseArgs(process.argv.slice(2));
const SIZE = size(args.size ?? '1G');
const REPEAT = Number(args.repeat ?? 2);
const CONC = Number(args.concurrency ?? 8);
const dir = args.dir ?? join(root, 'bench', 'out', 's3');

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const { img, dstImg } = benchImages(dir, SIZE);

const script = join(root, 'test', 'support', 'ceph-s3-server.sh');
const cephDir = join(mkdtempSync(join(tmpdir(), 'bkp-bench-s3-')), 'ceph');
const port = await freePort();
sh(`cd /tmp && bash ${script} start ${cephDir} ${port} ${await freePort()} >/dev/null 2>&1`);
const endpoint = `http://127.0.0.1:${port}`;
const env = {
  AWS_ACCESS_KEY_ID: 'bkptestkey',
  AWS_SECRET_ACCESS_KEY: 'bkptestsecret',
  AWS_ENDPOINT_URL: endpoint,
  AWS_REGION: 'us-east-1',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};
const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } });
await client.send(new CreateBucketCommand({ Bucket: 'bench' }));
client.destroy();

const src = sh(`losetup --find --show ${img}`);
const dst = sh(`losetup --find --show ${dstImg}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { machine: machine(), size: SIZE, repeat: REPEAT, concurrency: CONC, full: { local: [], s3: [] }, restore: { parallel: [], single: [], local: [] } };

function requests(log) {
  const lines = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const by = {};
  for (const l of lines) by[l.split(' ')[0]] = (by[l.split(' ')[0]] ?? 0) + 1;
  rmSync(log);
  return { total: lines.length, by };
}

try {
  const srcHash = sh(`sha256sum ${src} | cut -d' ' -f1`);
  let s3Repo;
  let localRepo;
  for (let i = 0; i < REPEAT; i++) {
    // a pair: the same full backup to a fresh local repository and to a fresh S3 prefix, order alternating
    localRepo = join(dir, `repo-${i}`);
    s3Repo = `s3://bench/run-${i}`;
    const runLocal = () => {
      sh(`node ${bkp} init --repo ${localRepo} --quiet`);
      dropCaches();
      const r = timed(`node ${bkp} full --device ${src} --repo ${localRepo} --no-snapshot --quiet --json`, dir);
      results.full.local.push({ secs: r.secs, rss: r.rss, stored: du(localRepo) });
    };
    const runS3 = () => {
      sh(`AWS_ACCESS_KEY_ID=${env.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${env.AWS_SECRET_ACCESS_KEY} AWS_ENDPOINT_URL=${endpoint} node ${bkp} init --repo ${s3Repo} --quiet`);
      dropCaches();
      const log = join(dir, 'requests.log');
      const r = timed(`node ${bkp} full --device ${src} --repo ${s3Repo} --no-snapshot --quiet --json --s3-concurrency ${CONC}`, dir, { ...env, BKP_S3_REQUEST_LOG: log });
      const out = JSON.parse(r.stdout);
      results.full.s3.push({ secs: r.secs, rss: r.rss, stored: out.devices[0].stats.bytesStored, requests: requests(log) });
    };
    if (i % 2 === 0) {
      runLocal();
      runS3();
    } else {
      runS3();
      runLocal();
    }
    console.error(`pair ${i + 1}/${REPEAT}: local ${results.full.local.at(-1).secs.toFixed(2)} s, S3 ${results.full.s3.at(-1).secs.toFixed(2)} s`);
  }
  // restores of the last S3 backup: parallel ranged GETs vs one at a time, and local as reference
  for (let i = 0; i < REPEAT; i++) {
    for (const [name, conc] of i % 2 === 0 ? [['parallel', CONC], ['single', 1]] : [['single', 1], ['parallel', CONC]]) {
      dropCaches();
      const log = join(dir, 'requests.log');
      const r = timed(`node ${bkp} restore --repo ${s3Repo} --to ${dst} --force --quiet --s3-concurrency ${conc}`, dir, { ...env, BKP_S3_REQUEST_LOG: log });
      if (sh(`sha256sum ${dst} | cut -d' ' -f1`) !== srcHash) throw new Error(`restore from S3 (${name}) is not byte-equal`);
      results.restore[name].push({ secs: r.secs, rss: r.rss, requests: requests(log) });
    }
    dropCaches();
    const r = timed(`node ${bkp} restore --repo ${localRepo} --to ${dst} --force --quiet`, dir);
    results.restore.local.push({ secs: r.secs, rss: r.rss });
    console.error(`restore round ${i + 1}/${REPEAT} done`);
  }
} finally {
  sh(`losetup -d ${src} ${dst}`);
  sh(`bash ${script} stop ${cephDir}`);
}

const m = (xs, k = 'secs') => median(xs.map((x) => x[k]));
const mb = (secs) => (SIZE / MiB / secs).toFixed(0);
const rows = [
  ['bkp full → local directory', m(results.full.local), mb(m(results.full.local)), m(results.full.local, 'rss'), '-'],
  ['bkp full → S3 (RGW on 127.0.0.1)', m(results.full.s3), mb(m(results.full.s3)), m(results.full.s3, 'rss'), results.full.s3.at(-1).requests.total],
  [`bkp restore ← S3, ${CONC} ranged GETs in flight`, m(results.restore.parallel), mb(m(results.restore.parallel)), m(results.restore.parallel, 'rss'), results.restore.parallel.at(-1).requests.total],
  ['bkp restore ← S3, one GET at a time', m(results.restore.single), mb(m(results.restore.single)), m(results.restore.single, 'rss'), results.restore.single.at(-1).requests.total],
  ['bkp restore ← local directory', m(results.restore.local), mb(m(results.restore.local)), m(results.restore.local, 'rss'), '-'],
];
const table = [
  '| run | median s | MiB/s | peak RSS MiB | S3 requests |',
  '|---|---:|---:|---:|---:|',
  ...rows.map(([n, s, r, rss, q]) => `| ${n} | ${s.toFixed(2)} | ${r} | ${(rss / MiB).toFixed(0)} | ${q} |`),
].join('\n');
const ratios = {
  fullS3VsLocal: results.full.local.map((l, i) => l.secs / results.full.s3[i].secs),
  restoreParallelVsSingle: results.restore.single.map((s, i) => s.secs / results.restore.parallel[i].secs),
};
results.table = table;
results.ratios = ratios;
writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
console.log(table);
console.log(`\nS3 full speed relative to local, per pair: ${ratios.fullS3VsLocal.map((r) => r.toFixed(2) + 'x').join(', ')}`);
console.log(`parallel S3 restore speed-up over one GET at a time, per pair: ${ratios.restoreParallelVsSingle.map((r) => r.toFixed(2) + 'x').join(', ')}`);
console.log(`S3 full requests: ${JSON.stringify(results.full.s3.at(-1).requests.by)}; stored ${(results.full.s3.at(-1).stored / MiB).toFixed(0)} MiB`);
