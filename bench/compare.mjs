#!/usr/bin/env node
// bkp against the physical baseline (dd | zstd), restic and borg, on one realistic disk, in one run:
//   1. a loop device with ext4 filled with copies of /usr trees, incompressible files from
//      /dev/urandom, and free space;
//   2. first backups: dd iflag=direct | zstd -1 -T2, bkp full, restic, borg, bkp full through the
//      blksnap fake (which starts the change-tracking chain);
//   3. churn: ~1% of the device's bytes written as file edits, appends and new files, plus deletes,
//      through the mounted filesystem; the blocks that changed are found by comparing the device
//      before and after, and written again through the fake's write path so its CBT map sees them;
//   4. second backups: bkp full (the anchor for the incremental's share), bkp incr (CBT, through the
//      fake), raw read + bkp incr --no-snapshot (digest fallback), restic, borg;
//   5. restores of the second backup onto a second loop device: raw dd write, bkp, restic, borg —
//      each checked by SHA-256 against the device.
// Caches are dropped before every timed run. --repeat N runs steps 2-5 N times (fresh
// repositories each round, a new churn each round) and reports medians of per-round ratios.
// Needs root, restic and borgbackup (apt-get install -y restic borgbackup). Build first (npm ci).
// Usage: node bench/compare.mjs [--size 2G] [--repeat 1] [--chunk-size 1M] [--level 3] [--churn 0.01]
//        [--skip restic,borg] [--docs no] [--dir bench/out/compare]
//        [--bkp-repo URL] [--restic-repo URL] [--borg-repo URL]   (repositories elsewhere, e.g. S3)
import { mkdirSync, rmSync, openSync, closeSync, readSync, writeSync, ftruncateSync, writeFileSync, readFileSync, readdirSync, statSync, copyFileSync, unlinkSync, existsSync } from 'node:fs';
import { hash } from 'node:crypto';
import { join, resolve, dirname } from 'node:path';
import { MiB, root, bkp, bkpWithFake, parseArgs, size, sh, dropCaches, timed, du, machine, mulberry32, median } from './lib.mjs';
import { BlksnapFake } from '../dist/test/support/blksnap/fake.js';

const args = parseArgs(process.argv.slice(2));
const SIZE_ARG = args.size ?? '2G';
const SIZE = size(SIZE_ARG);
const ROUNDS = Number(args.repeat ?? 1);
const CHUNK = args['chunk-size'] ?? '1M';
const LEVEL = Number(args.level ?? 3);
const CHURN = Number(args.churn ?? 0.01);
const SKIP = new Set((args.skip ?? '').split(',').filter(Boolean));
const WRITE_DOCS = (args.docs ?? 'yes') !== 'no';
const dir = resolve(args.dir ?? join(root, 'bench', 'out', 'compare'));
const BLOCK = 4096;
const CBT_BLOCK = 64 * 1024; // the fake's (and the module's) change-tracking block for devices up to 128 GiB

// Where repositories live: local directories under `dir` by default. --bkp-repo, --restic-repo and
// --borg-repo put them elsewhere (an S3 URL: s3:… for restic, s3://… for bkp once it has an S3
// target); the environment (AWS_*, RESTIC_*) is passed through. Bytes stored are measured for
// local paths only; a remote store reports them as "n/a" (or a hook can fill `storedBytes`).
const runTag = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
const stores = {
  bkp: (name) => (args['bkp-repo'] ? `${args['bkp-repo']}/${runTag}-${name}` : join(dir, name)),
  restic: (round) => (args['restic-repo'] ? `${args['restic-repo']}/${runTag}-r${round}` : join(dir, 'restic')),
  borg: (round) => (args['borg-repo'] ? `${args['borg-repo']}/${runTag}-r${round}` : join(dir, 'borg')),
};
const storedBytes = (loc) => (loc.startsWith('/') && existsSync(loc) ? du(loc) : undefined);
const resetStore = (loc) => {
  if (loc.startsWith('/')) rmSync(loc, { recursive: true, force: true });
};

const toolEnv = {
  RESTIC_PASSWORD: process.env.RESTIC_PASSWORD ?? 'bench',
  RESTIC_CACHE_DIR: join(dir, 'restic-cache'),
  BORG_BASE_DIR: join(dir, 'borg-base'),
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
};

// --- loop devices and mounts, always released ---
const held = { loops: [], mount: null };
function release() {
  if (held.mount) {
    try {
      sh(`umount ${held.mount}`);
    } catch (e) {
      console.error(`umount ${held.mount}: ${e.message}`);
    }
    held.mount = null;
  }
  for (const l of held.loops.splice(0)) {
    try {
      sh(`losetup -d ${l}`);
    } catch (e) {
      console.error(`losetup -d ${l}: ${e.message}`);
    }
  }
}
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(sig, () => {
    release();
    process.exit(code);
  });
}
const attach = (file) => {
  const dev = sh(`losetup --find --show ${file}`);
  held.loops.push(dev);
  return dev;
};
const mount = (dev, at) => {
  mkdirSync(at, { recursive: true });
  sh(`mount ${dev} ${at}`);
  held.mount = at;
};
const umount = (dev) => {
  sh(`sync; umount ${held.mount}`);
  held.mount = null;
  sh(`blockdev --flushbufs ${dev}`); // the device's own page cache may hold blocks the filesystem rewrote
};

const log = (m) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

// --- the disk ---

/** Copies regular files of `trees` into `into` until `budget` bytes; the next `reserveBytes` are listed, not copied (churn's new files). */
function copyTrees(trees, into, budget, reserveBytes) {
  const copied = [];
  const reserve = [];
  let total = 0;
  let reserved = 0;
  let full = false;
  const walk = (src, rel) => {
    if (full || reserved >= reserveBytes) return;
    let ents;
    try {
      ents = readdirSync(src, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    } catch {
      return;
    }
    for (const e of ents) {
      if (full || reserved >= reserveBytes) return;
      const from = join(src, e.name);
      const to = join(rel, e.name);
      if (e.isDirectory()) walk(from, to);
      else if (e.isFile()) {
        let st;
        try {
          st = statSync(from);
        } catch {
          continue;
        }
        if (st.size > 64 * MiB) continue;
        if (total + st.size <= budget) {
          const dest = join(into, to);
          try {
            mkdirSync(dirname(dest), { recursive: true });
            copyFileSync(from, dest);
          } catch (err) {
            if (err.code === 'ENOSPC') full = true;
            continue;
          }
          total += st.size;
          copied.push({ path: dest, size: st.size });
        } else if (total > budget - 32 * MiB) {
          reserve.push({ path: from, size: st.size });
          reserved += st.size;
        }
      }
    }
  };
  for (const t of trees) walk(t, t.replace(/^\/+/, '').replace(/\//g, '-'));
  return { copied, reserve, total };
}

function urandomFile(path, bytes) {
  sh(`head -c ${bytes} /dev/urandom > ${path}`);
}

function fillDisk(mnt) {
  const filesBudget = Math.round(SIZE * 0.55);
  const randomBudget = Math.round(SIZE * 0.1);
  const reserveBytes = Math.round(SIZE * CHURN * 4 * ROUNDS);
  const trees = ['/usr/include', '/usr/share', '/usr/bin', '/usr/lib'];
  const { copied, reserve, total } = copyTrees(trees, join(mnt, 'files'), filesBudget, reserveBytes);
  mkdirSync(join(mnt, 'random'));
  let rnd = 0;
  for (let i = 0; rnd < randomBudget; i++) {
    const n = Math.min(16 * MiB, randomBudget - rnd);
    const p = join(mnt, 'random', `r${String(i).padStart(3, '0')}.bin`);
    urandomFile(p, n);
    copied.push({ path: p, size: n });
    rnd += n;
  }
  return { files: copied, reserve, filesBytes: total, randomBytes: rnd };
}

const WORDS = 'error warning info backup restore kernel device sector chunk tracker snapshot the of and to a in'.split(' ');

/** ~`target` bytes written through the filesystem: in-place edits, appends, new files; plus deletes. */
function churn(mnt, disk, rnd, target, round) {
  const live = disk.files.filter((f) => !f.gone);
  const pick = () => live[Math.floor(rnd() * live.length)];
  const done = { edited: 0, appended: 0, created: 0, deleted: 0, files: 0 };
  // edits: 4-64 KiB ranges of existing files rewritten with a few bytes changed
  while (done.edited < target * 0.4) {
    const f = pick();
    if (f.gone || f.size < BLOCK) continue;
    const len = Math.min(f.size, BLOCK * (1 + Math.floor(rnd() * 16)));
    const at = Math.floor((rnd() * (f.size - len + 1)) / BLOCK) * BLOCK;
    const fd = openSync(f.path, 'r+');
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, at);
    for (let i = Math.floor(rnd() * 64); i < len; i += 64) buf[i] ^= 0x5a;
    writeSync(fd, buf, 0, len, at);
    closeSync(fd);
    done.edited += len;
    done.files++;
  }
  // appends: log-like text at the end of files
  while (done.appended < target * 0.1) {
    const f = pick();
    if (f.gone) continue;
    const text = Buffer.from(Array.from({ length: 2000 + Math.floor(rnd() * 4000) }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ') + '\n');
    const fd = openSync(f.path, 'a');
    writeSync(fd, text);
    closeSync(fd);
    f.size += text.length;
    done.appended += text.length;
    done.files++;
  }
  // new files: more /usr files (not on the disk yet), and one incompressible file
  const newDir = join(mnt, `new-${round}`);
  mkdirSync(newDir, { recursive: true });
  while (done.created < target * 0.4 && disk.reserve.length) {
    const src = disk.reserve.shift();
    if (src.size > target * 0.4 - done.created + 256 * 1024) continue; // not far past the share
    const dest = join(newDir, src.path.replace(/^\/+/, '').replace(/\//g, '-'));
    try {
      copyFileSync(src.path, dest);
    } catch {
      continue;
    }
    disk.files.push({ path: dest, size: src.size });
    done.created += src.size;
    done.files++;
  }
  const rbytes = Math.round(target * 0.05 / BLOCK) * BLOCK;
  urandomFile(join(newDir, 'random.bin'), rbytes);
  disk.files.push({ path: join(newDir, 'random.bin'), size: rbytes });
  done.created += rbytes;
  // deletes: whole files (only metadata is written; the data blocks become free space)
  while (done.deleted < target * 0.1) {
    const f = pick();
    if (f.gone) continue;
    unlinkSync(f.path);
    f.gone = true;
    done.deleted += f.size;
    done.files++;
  }
  return done;
}

/** 8 bytes of SHA-1 per 4 KiB block of the device (read with the device's page cache flushed). */
function blockDigests(dev) {
  sh(`blockdev --flushbufs ${dev}`);
  const fd = openSync(dev, 'r');
  const buf = Buffer.alloc(4 * MiB);
  const out = Buffer.alloc((SIZE / BLOCK) * 8);
  for (let o = 0; o < SIZE; o += buf.length) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, SIZE - o), o);
    for (let j = 0; j < n; j += BLOCK) hash('sha1', buf.subarray(j, j + BLOCK), 'buffer').copy(out, ((o + j) / BLOCK) * 8, 0, 8);
  }
  closeSync(fd);
  return out;
}

/**
 * The blksnap fake sees only writes made through its write path (the kernel module sees every
 * write to the device). The churn went through the mounted filesystem, so the blocks it changed
 * are written again — same bytes — through the fake, which marks its CBT map. Neighbouring
 * changed blocks are written as one run (gaps under 64 KiB, the CBT block, are bridged).
 */
async function feedChanges(fake, dev, before, after) {
  const blocks = SIZE / BLOCK;
  const runs = [];
  let changed = 0;
  for (let i = 0; i < blocks; i++) {
    if (before.compare(after, i * 8, i * 8 + 8, i * 8, i * 8 + 8) === 0) continue;
    changed++;
    const last = runs[runs.length - 1];
    if (last && i - last.end < 16 && i - last.start < 1024) last.end = i + 1;
    else runs.push({ start: i, end: i + 1 });
  }
  const fd = openSync(dev, 'r');
  let fed = 0;
  const marked = new Set(); // the 64 KiB CBT blocks the fake marks for these writes
  for (const r of runs) {
    const data = Buffer.alloc((r.end - r.start) * BLOCK);
    readSync(fd, data, 0, data.length, r.start * BLOCK);
    await fake.write(dev, r.start * BLOCK, data);
    fed += data.length;
    for (let b = Math.floor((r.start * BLOCK) / CBT_BLOCK); b * CBT_BLOCK < r.end * BLOCK; b++) marked.add(b);
  }
  closeSync(fd);
  return { changedBytes: changed * BLOCK, fedBytes: fed, runs: runs.length, marked: [...marked].sort((a, b) => a - b) };
}

/** What zstd at the run's level makes of the marked CBT blocks, concatenated: the floor for storing them. */
function zstdOfBlocks(dev, blocks) {
  const file = join(dir, 'marked.bin');
  const fd = openSync(dev, 'r');
  const out = openSync(file, 'w');
  const buf = Buffer.alloc(CBT_BLOCK);
  for (const b of blocks) {
    const n = readSync(fd, buf, 0, CBT_BLOCK, b * CBT_BLOCK);
    writeSync(out, buf, 0, n);
  }
  closeSync(fd);
  closeSync(out);
  const bytes = Number(sh(`zstd -${LEVEL} -q -c ${file} | wc -c`));
  rmSync(file);
  return bytes;
}

// --- runs ---

const rounds = [];
const names = new Map();
let cur;
function run(key, label, cmd, { env = {}, bytes = SIZE, drop = true } = {}) {
  if (drop) dropCaches();
  log(`${label}...`);
  const r = timed(cmd, dir, { ...toolEnv, ...env });
  log(`${label}: ${r.secs.toFixed(2)} s, peak RSS ${(r.rss / MiB).toFixed(0)} MiB`);
  const rec = { key, label, cmd, secs: r.secs, rss: r.rss, bytes, stdout: r.stdout };
  cur.runs[key] = rec;
  return rec;
}
const bkpCmd = (sub) => `node ${bkp} ${sub}`;
const bkpFakeCmd = (sub) => `node ${bkpWithFake} ${sub}`;
const ddRead = (dev) => `dd if=${dev} iflag=direct bs=4M status=none`;
const ddWrite = (dev) => `dd of=${dev} bs=4M iflag=fullblock oflag=direct conv=fsync status=none`;

const sha256 = (p) => sh(`sha256sum ${p} | cut -d' ' -f1`);

async function main() {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'diff'), { recursive: true });
  const srcImg = join(dir, 'source.img');
  const dstImg = join(dir, 'target.img');
  for (const f of [srcImg, dstImg]) {
    const fd = openSync(f, 'w');
    ftruncateSync(fd, SIZE);
    closeSync(fd);
  }
  const src = attach(srcImg);
  const dst = attach(dstImg);
  names.set(src, 'DEV').set(dst, 'DST');
  const mnt = join(dir, 'mnt');
  log(`${src}: mkfs.ext4, filling with /usr trees and /dev/urandom files...`);
  sh(`mkfs.ext4 -q -F -L benchdisk ${src}`);
  mount(src, mnt);
  const disk = fillDisk(mnt);
  const df = sh(`df -B1 --output=used,avail ${mnt} | tail -1`).split(/\s+/).filter(Boolean).map(Number);
  umount(src);
  const diskInfo = { filesBytes: disk.filesBytes, fileCount: disk.files.length, randomBytes: disk.randomBytes, usedBytes: df[0], freeBytes: df[1] };
  log(`disk: ${(disk.filesBytes / MiB).toFixed(0)} MiB in ${disk.files.length} files from /usr, ${(disk.randomBytes / MiB).toFixed(0)} MiB random; fs used ${(df[0] / MiB).toFixed(0)} MiB, free ${(df[1] / MiB).toFixed(0)} MiB`);

  const fakeDir = join(dir, 'fake');
  const fake = await BlksnapFake.open(fakeDir, {});
  const fakeEnv = { BKP_BLKSNAP_FAKE: fakeDir };
  const diffArgs = `--diff-storage ${dir}/diff --diff-storage-limit 4G`;
  const rnd = mulberry32(20261125);

  for (let round = 0; round < ROUNDS; round++) {
    cur = { round, runs: {}, stored: {}, churn: null, feed: null, restoresEqual: {} };
    rounds.push(cur);
    const repoDirect = stores.bkp(`bkp-direct-r${round}`);
    const repoCbt = stores.bkp(`bkp-cbt-r${round}`);
    const repoAnchor = stores.bkp(`bkp-anchor-r${round}`);
    const resticRepo = stores.restic(round);
    const borgRepo = stores.borg(round);
    for (const r of [repoDirect, repoCbt, repoAnchor, resticRepo, borgRepo]) resetStore(r);
    for (const r of [repoDirect, repoCbt, repoAnchor]) sh(`node ${bkp} init --repo ${r} --chunk-size ${CHUNK} --compression-level ${LEVEL} --quiet`);

    // first backups
    const zst = join(dir, 'baseline.zst');
    run('ddzstd', 'dd iflag=direct bs=4M | zstd -1 -T2', `${ddRead(src)} | zstd -1 -T2 -q -f -o ${zst}`);
    cur.stored.ddzstd = statSync(zst).size;
    rmSync(zst);
    run('full', 'bkp full (--no-snapshot)', bkpCmd(`full --device ${src} --repo ${repoDirect} --no-snapshot --quiet --json`));
    cur.stored.full = storedBytes(repoDirect);
    if (LEVEL !== 1) {
      // the same at zstd level 1, the baseline's level (not kept: a repository of its own)
      const repo1 = stores.bkp(`bkp-level1-r${round}`);
      resetStore(repo1);
      sh(`node ${bkp} init --repo ${repo1} --chunk-size ${CHUNK} --compression-level 1 --quiet`);
      run('full1', 'bkp full (--no-snapshot), zstd level 1', bkpCmd(`full --device ${src} --repo ${repo1} --no-snapshot --quiet --json`));
      cur.stored.full1 = storedBytes(repo1);
      resetStore(repo1);
    }
    if (!SKIP.has('restic')) {
      sh(`restic -r ${resticRepo} init -q`, toolEnv);
      run('restic1', 'restic backup --stdin, first', `${ddRead(src)} | restic -r ${resticRepo} backup -q --stdin --stdin-filename disk.img`);
      cur.stored.restic1 = storedBytes(resticRepo);
    }
    if (!SKIP.has('borg')) {
      sh(`borg init -e none ${borgRepo}`, toolEnv);
      run('borg1', 'borg create (zstd,3), first', `${ddRead(src)} | borg create --compression zstd,3 --stdin-name disk.img ${borgRepo}::first -`);
      cur.stored.borg1 = storedBytes(borgRepo);
    }
    run('fullFake', 'bkp full (snapshot via blksnap fake)', bkpFakeCmd(`full --device ${src} --repo ${repoCbt} ${diffArgs} --quiet --json`), { env: fakeEnv });
    cur.stored.fullFake = storedBytes(repoCbt);

    // churn through the filesystem, then tell the fake's CBT which blocks changed
    log('churn...');
    const before = blockDigests(src);
    mount(src, mnt);
    cur.churn = churn(mnt, disk, rnd, Math.round(SIZE * CHURN), round);
    umount(src);
    const after = blockDigests(src);
    cur.feed = await feedChanges(fake, src, before, after);
    log(`churn: ${JSON.stringify(cur.churn)}; device blocks changed ${(cur.feed.changedBytes / MiB).toFixed(1)} MiB, fed to the fake ${(cur.feed.fedBytes / MiB).toFixed(1)} MiB in ${cur.feed.runs} writes`);
    const expected = sha256(src);

    // second backups
    run('anchor', 'bkp full (--no-snapshot), after churn', bkpCmd(`full --device ${src} --repo ${repoAnchor} --no-snapshot --quiet --json`));
    const incr = run('incr', 'bkp incr (CBT via blksnap fake)', bkpFakeCmd(`incr --device ${src} --repo ${repoCbt} ${diffArgs} --quiet --json`), { env: fakeEnv });
    const incrDev = JSON.parse(incr.stdout).devices[0];
    if (incrDev.method.mode !== 'cbt') throw new Error(`bkp incr did not use the CBT map: ${JSON.stringify(incrDev.method)}`);
    incr.detail = { bytesRead: incrDev.stats.bytesRead, bytesStored: incrDev.stats.bytesStored, cbtMarked: incrDev.method.cbtChangedBytes, changed: incrDev.method.changedBytes, zstdOfMarked: zstdOfBlocks(src, cur.feed.marked) };
    delete cur.feed.marked; // not for results.json
    // the fixed costs of an incremental (start-up, snapshot, CBT map, index read and write): one with nothing to read
    const idle = run('incrIdle', 'bkp incr with no change (fixed costs)', bkpFakeCmd(`incr --device ${src} --repo ${repoCbt} ${diffArgs} --quiet --json`), { env: fakeEnv });
    idle.detail = { bytesRead: JSON.parse(idle.stdout).devices[0].stats.bytesRead };
    cur.stored.incr = incrDev.stats.bytesStored;
    run('rawRead', 'dd iflag=direct bs=4M > /dev/null (raw read)', `${ddRead(src)} > /dev/null`);
    const before2 = storedBytes(repoDirect);
    const dig = run('digest', 'bkp incr --no-snapshot (digest fallback)', bkpCmd(`incr --device ${src} --repo ${repoDirect} --no-snapshot --quiet --json`));
    const digDev = JSON.parse(dig.stdout).devices[0];
    dig.detail = { mode: digDev.method.mode, bytesRead: digDev.stats.bytesRead, bytesStored: digDev.stats.bytesStored };
    cur.stored.digest = before2 === undefined ? undefined : storedBytes(repoDirect) - before2;
    if (!SKIP.has('restic')) {
      const b = storedBytes(resticRepo);
      run('restic2', 'restic backup --stdin, second', `${ddRead(src)} | restic -r ${resticRepo} backup -q --stdin --stdin-filename disk.img`);
      cur.stored.restic2 = b === undefined ? undefined : storedBytes(resticRepo) - b;
    }
    if (!SKIP.has('borg')) {
      const b = storedBytes(borgRepo);
      run('borg2', 'borg create (zstd,3), second', `${ddRead(src)} | borg create --compression zstd,3 --stdin-name disk.img ${borgRepo}::second -`);
      cur.stored.borg2 = b === undefined ? undefined : storedBytes(borgRepo) - b;
    }

    // restores of the second backup
    run('rawWrite', 'dd bs=4M oflag=direct (raw write)', `dd if=${srcImg} of=${dst} bs=4M oflag=direct conv=fsync status=none`);
    run('restore', 'bkp restore', bkpCmd(`restore --repo ${repoCbt} --to ${dst} --force --quiet`));
    cur.restoresEqual.restore = sha256(dst) === expected;
    if (!SKIP.has('restic')) {
      run('resticRestore', 'restic dump | dd oflag=direct', `restic -r ${resticRepo} dump -q latest /disk.img | ${ddWrite(dst)}`);
      cur.restoresEqual.resticRestore = sha256(dst) === expected;
    }
    if (!SKIP.has('borg')) {
      run('borgRestore', 'borg extract --stdout | dd oflag=direct', `borg extract --stdout ${borgRepo}::second disk.img | ${ddWrite(dst)}`);
      cur.restoresEqual.borgRestore = sha256(dst) === expected;
    }
    for (const r of Object.values(cur.runs)) delete r.stdout;
    log(`round ${round + 1}/${ROUNDS} done; restores byte-equal: ${JSON.stringify(cur.restoresEqual)}`);
  }
  await fake.reload().catch(() => {});
  return diskInfo;
}

// --- report ---

function ratios(round) {
  const t = (k) => round.runs[k]?.secs;
  const q = (a, b) => (a !== undefined && b !== undefined ? a / b : undefined);
  return {
    fullVsDdZstd: q(t('ddzstd'), t('full')),
    full1VsDdZstd: q(t('ddzstd'), t('full1')),
    fullVsRestic: q(t('restic1'), t('full')),
    fullVsBorg: q(t('borg1'), t('full')),
    incrShareOfFull: q(t('incr'), t('anchor')),
    incrIdleShareOfFull: q(t('incrIdle'), t('anchor')),
    incrReadVsMarked: round.runs.incr?.detail ? round.runs.incr.detail.bytesRead / round.runs.incr.detail.cbtMarked : undefined,
    incrStoredVsZstdMarked: round.runs.incr?.detail ? round.runs.incr.detail.bytesStored / round.runs.incr.detail.zstdOfMarked : undefined,
    incrShareOfFakeFull: q(t('incr'), t('fullFake')),
    incrVsRestic2: q(t('restic2'), t('incr')),
    incrVsBorg2: q(t('borg2'), t('incr')),
    digestVsRawRead: q(t('rawRead'), t('digest')),
    restoreVsRawWrite: q(t('rawWrite'), t('restore')),
    restoreVsRestic: q(t('resticRestore'), t('restore')),
    restoreVsBorg: q(t('borgRestore'), t('restore')),
  };
}

function summarise(diskInfo) {
  const per = rounds.map(ratios);
  const med = {};
  for (const k of Object.keys(per[0])) {
    const xs = per.map((p) => p[k]).filter((x) => x !== undefined);
    if (xs.length) med[k] = { median: median(xs), all: xs };
  }
  const keys = Object.keys(rounds[0].runs);
  const rows = keys.map((k) => {
    const rs = rounds.map((r) => r.runs[k]);
    return {
      key: k,
      label: rs[0].label,
      cmd: rs[0].cmd,
      secs: median(rs.map((r) => r.secs)),
      rss: Math.max(...rs.map((r) => r.rss)),
      bytes: rs[0].bytes,
      stored: median(rounds.map((r) => r.stored[k]).filter((x) => x !== undefined)),
      detail: rs[rs.length - 1].detail,
    };
  });
  const fullRss = Math.max(...rounds.map((r) => r.runs.full.rss), ...rounds.map((r) => r.runs.anchor.rss));
  const targets = [
    { what: 'bkp full ≥ 1.0x dd \\| zstd -1 -T2', value: med.fullVsDdZstd, need: 1.0, fmt: 'x' },
    { what: '(bkp full at zstd level 1 ≥ 1.0x dd \\| zstd -1 -T2)', value: med.full1VsDdZstd, need: 1.0, fmt: 'x' },
    { what: 'bkp full ≥ 3x restic first backup', value: med.fullVsRestic, need: 3, fmt: 'x' },
    { what: 'bkp full ≥ 3x borg first backup', value: med.fullVsBorg, need: 3, fmt: 'x' },
    { what: 'bkp incr (CBT) ≤ 10% of bkp full', value: med.incrShareOfFull, need: 0.1, fmt: '%', atMost: true },
    { what: 'bkp incr (CBT) reads ≤ 1.5x the CBT-marked bytes', value: med.incrReadVsMarked, need: 1.5, fmt: 'x', atMost: true },
    { what: 'bkp incr (CBT) stores ≤ 1.5x zstd of the marked blocks', value: med.incrStoredVsZstdMarked, need: 1.5, fmt: 'x', atMost: true },
    { what: 'bkp incr (CBT) ≥ 30x faster than restic second backup', value: med.incrVsRestic2, need: 30, fmt: 'x' },
    { what: 'bkp restore ≥ 0.8x raw sequential write', value: med.restoreVsRawWrite, need: 0.8, fmt: 'x' },
    { what: 'bkp restore ≥ 2x restic restore', value: med.restoreVsRestic, need: 2, fmt: 'x' },
    { what: 'peak RSS of bkp full ≤ 300 MiB', value: { median: fullRss / MiB, all: [fullRss / MiB] }, need: 300, fmt: 'MiB', atMost: true },
  ].filter((t) => t.value);
  for (const t of targets) t.met = t.atMost ? t.value.median <= t.need : t.value.median >= t.need;
  return { rows, med, targets, per };
}

const fmtRatio = (v, f) => (f === '%' ? `${(v * 100).toFixed(1)}%` : f === 'MiB' ? `${v.toFixed(0)} MiB` : `${v.toFixed(2)}x`);

function markdown(diskInfo, s, env) {
  const mb = (b) => (b === undefined || Number.isNaN(b) ? '' : (b / MiB).toFixed(0));
  const r = (k) => s.med[k];
  const ratioText = {
    full: r('fullVsDdZstd') && `${r('fullVsDdZstd').median.toFixed(2)}x dd\\|zstd`,
    full1: r('full1VsDdZstd') && `${r('full1VsDdZstd').median.toFixed(2)}x dd\\|zstd`,
    restic1: r('fullVsRestic') && `bkp full ${r('fullVsRestic').median.toFixed(1)}x faster`,
    borg1: r('fullVsBorg') && `bkp full ${r('fullVsBorg').median.toFixed(1)}x faster`,
    fullFake: r('incrShareOfFakeFull') && `incr = ${(r('incrShareOfFakeFull').median * 100).toFixed(1)}% of this`,
    incr: r('incrShareOfFull') && `${(r('incrShareOfFull').median * 100).toFixed(1)}% of bkp full`,
    incrIdle: r('incrIdleShareOfFull') && `${(r('incrIdleShareOfFull').median * 100).toFixed(1)}% of bkp full`,
    restic2: r('incrVsRestic2') && `bkp incr ${r('incrVsRestic2').median.toFixed(1)}x faster`,
    borg2: r('incrVsBorg2') && `bkp incr ${r('incrVsBorg2').median.toFixed(1)}x faster`,
    digest: r('digestVsRawRead') && `${r('digestVsRawRead').median.toFixed(2)}x raw read`,
    restore: r('restoreVsRawWrite') && `${r('restoreVsRawWrite').median.toFixed(2)}x raw write`,
    resticRestore: r('restoreVsRestic') && `bkp restore ${r('restoreVsRestic').median.toFixed(1)}x faster`,
    borgRestore: r('restoreVsBorg') && `bkp restore ${r('restoreVsBorg').median.toFixed(1)}x faster`,
  };
  const phase = { ddzstd: 'first backup', full: 'first backup', full1: 'first backup', restic1: 'first backup', borg1: 'first backup', fullFake: 'first backup', anchor: 'after churn', incr: 'after churn', incrIdle: 'after churn', rawRead: 'after churn', digest: 'after churn', restic2: 'after churn', borg2: 'after churn', rawWrite: 'restore', restore: 'restore', resticRestore: 'restore', borgRestore: 'restore' };
  const lines = [];
  lines.push(`Command: \`${['node bench/compare.mjs', ...process.argv.slice(2)].join(' ')}\` (${ROUNDS} round${ROUNDS > 1 ? 's' : ''}, ${new Date().toISOString().slice(0, 10)}).`);
  lines.push('');
  lines.push(`Machine: ${env.machine.cpus} vCPUs (${env.machine.cpu}), ${env.machine.memGiB} GiB RAM, ${env.disk}; kernel ${env.machine.kernel}; Node ${env.machine.node}; ${env.versions}.`);
  lines.push('');
  lines.push(`Disk: a ${SIZE_ARG} loop device (file on the root disk), ext4, holding ${mb(diskInfo.filesBytes)} MiB of files copied from /usr/include, /usr/share, /usr/bin, /usr/lib (${diskInfo.fileCount} files) and ${mb(diskInfo.randomBytes)} MiB from /dev/urandom; filesystem used ${mb(diskInfo.usedBytes)} MiB, free ${mb(diskInfo.freeBytes)} MiB (never written: zeros). bkp: chunk ${CHUNK}, zstd level ${LEVEL}.`);
  const c = rounds[rounds.length - 1];
  lines.push('');
  lines.push(`Churn (last round): ${mb(c.churn.edited)} MiB edited in place, ${mb(c.churn.appended)} MiB appended, ${mb(c.churn.created)} MiB of new files, ${mb(c.churn.deleted)} MiB of files deleted (${c.churn.files} files); ${(c.feed.changedBytes / MiB).toFixed(1)} MiB of device blocks changed (data, metadata, journal), written again through the blksnap fake as ${c.feed.runs} writes of ${(c.feed.fedBytes / MiB).toFixed(1)} MiB.`);
  lines.push('');
  lines.push('| phase | run | time (s) | MiB/s | stored (MiB) | peak RSS (MiB) | ratio (median of rounds) |');
  lines.push('|---|---|---:|---:|---:|---:|---|');
  for (const row of s.rows) {
    let label = row.label;
    if (row.detail?.bytesRead !== undefined) label += ` — read ${mb(row.detail.bytesRead)} MiB${row.detail.cbtMarked !== undefined ? `, CBT marked ${mb(row.detail.cbtMarked)} MiB, zstd of the marked blocks ${mb(row.detail.zstdOfMarked)} MiB, stored ${mb(row.detail.bytesStored)} MiB` : ''}`;
    lines.push(`| ${phase[row.key]} | ${label.replace(/\|/g, '\\|')} | ${row.secs.toFixed(2)} | ${(row.bytes / MiB / row.secs).toFixed(0)} | ${mb(row.stored)} | ${(row.rss / MiB).toFixed(0)} | ${ratioText[row.key] ?? ''} |`);
  }
  lines.push('');
  lines.push('"stored": the repository after the first backup; for second backups, what that backup added; for dd | zstd, the .zst file. MiB/s: device bytes per second of wall time.');
  const eq = rounds.map((r) => Object.entries(r.restoresEqual).filter(([, v]) => !v).map(([k]) => k)).flat();
  lines.push(`Restores byte-equal to the device (SHA-256): ${eq.length ? `NO — ${eq.join(', ')}` : 'all'}.`);
  lines.push('');
  lines.push('| target | measured | each round | met? |');
  lines.push('|---|---:|---|---|');
  for (const t of s.targets) lines.push(`| ${t.what} | ${fmtRatio(t.value.median, t.fmt)} | ${t.value.all.map((v) => fmtRatio(v, t.fmt)).join(', ')} | ${t.met ? 'yes' : '**no**'} |`);
  lines.push('');
  lines.push('Commands timed (DEV the source loop device, DST the target one):');
  lines.push('');
  lines.push('```');
  const re = new RegExp(`${dir}/?`, 'g');
  for (const row of s.rows) lines.push(`${row.key.padEnd(13)} ${row.cmd.replace(new RegExp(`node (${bkp}|${bkpWithFake})`, 'g'), 'bkp').replace(re, '').replace(/\/dev\/loop\d+/g, (m) => names.get(m) ?? m)}`);
  lines.push('```');
  return lines.join('\n');
}

function svg(s) {
  const colors = { bkp: '#2b6cb0', dd: '#718096', restic: '#c05621', borg: '#2f855a' };
  const tool = (label) => (label.startsWith('bkp') ? 'bkp' : label.startsWith('restic') ? 'restic' : label.startsWith('borg') ? 'borg' : 'dd');
  const W = 860;
  const left = 330;
  const rowH = 22;
  const rows = s.rows;
  const max = Math.max(...rows.map((r) => r.secs));
  const H = 40 + rows.length * rowH + 30;
  const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`];
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(`Wall time, ${SIZE_ARG} ext4 disk (median of ${ROUNDS} round${ROUNDS > 1 ? 's' : ''}; shorter is better)`)}</text>`);
  rows.forEach((r, i) => {
    const y = 36 + i * rowH;
    const w = Math.max(1, ((W - left - 70) * r.secs) / max);
    out.push(`<text x="${left - 6}" y="${y + 14}" text-anchor="end">${esc(r.label)}</text>`);
    out.push(`<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${colors[tool(r.label)]}"/>`);
    out.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + 14}">${r.secs.toFixed(2)} s</text>`);
  });
  let x = 10;
  const ly = H - 12;
  for (const [name, col] of Object.entries(colors)) {
    out.push(`<rect x="${x}" y="${ly - 10}" width="12" height="12" fill="${col}"/><text x="${x + 16}" y="${ly}">${name === 'dd' ? 'dd / zstd baselines' : name}</text>`);
    x += name === 'dd' ? 150 : 80;
  }
  out.push('</svg>');
  return out.join('\n');
}

let diskInfo;
try {
  diskInfo = await main();
} finally {
  release();
  rmSync(join(dir, 'source.img'), { force: true });
  rmSync(join(dir, 'target.img'), { force: true });
}
const s = summarise(diskInfo);
const rootDisk = sh(`lsblk -dno NAME,SIZE,ROTA,MODEL $(findmnt -no SOURCE -T ${dir} | sed 's/[0-9]*$//') 2>/dev/null || true`);
const env = {
  machine: machine(),
  disk: rootDisk ? `repositories and loop files on ${rootDisk.replace(/\s+/g, ' ').replace(/ 0( |$)/, ' (SSD/virtio) ').trim()}` : 'one disk',
  versions: [sh('zstd --version').replace(/^\*+ */, '').split(',')[0], SKIP.has('restic') ? '' : sh('restic version').split(' compiled')[0], SKIP.has('borg') ? '' : sh('borg --version')].filter(Boolean).join(', '),
};
writeFileSync(join(dir, 'results.json'), JSON.stringify({ args, size: SIZE, env, diskInfo, rounds, summary: s }, null, 2));
const md = markdown(diskInfo, s, env);
console.log(md);
if (WRITE_DOCS) {
  mkdirSync(join(root, 'docs', 'bench'), { recursive: true });
  writeFileSync(join(root, 'docs', 'bench', 'compare.svg'), svg(s) + '\n');
  const docPath = join(root, 'docs', 'benchmarks.md');
  const doc = readFileSync(docPath, 'utf8');
  const block = `<!-- compare:begin (written by node bench/compare.mjs) -->\n${md}\n\n![Wall time per run](bench/compare.svg)\n<!-- compare:end -->`;
  const re = /<!-- compare:begin[^>]*-->[\s\S]*<!-- compare:end -->/;
  writeFileSync(docPath, re.test(doc) ? doc.replace(re, block) : `${doc.trimEnd()}\n\n## bkp, restic and borg on one disk\n\n${block}\n`);
  console.error(`wrote docs/benchmarks.md and docs/bench/compare.svg`);
}
