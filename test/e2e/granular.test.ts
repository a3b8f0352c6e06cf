/**
 * Incrementals at change-tracking granularity (format v2, docs/format.md "Regions, pieces,
 * patches"): a CBT incremental reads only the pieces the kernel marked and stores them as a patch;
 * the digest fallback stores only the pieces that changed. Through the blksnap fake, the real
 * `bkp` binary and real loop devices; every point of a chain restores byte-equal, also after a
 * backup in the middle is removed, gc repacks, and verify reads every chunk.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp } from '../support/env.js';
import { makeImage, scribble, sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { mulberry32, fuzzSeed } from '../support/random.js';
import { refsOf } from '../support/index-refs.js';
import { decodeIndex } from '../../src/repo/index-file.js';
import { deviceKeyOf } from '../../src/repo/repository.js';
import { packKey } from '../../src/repo/pack.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Not a whole number of regions: the last region (and its last piece) are short. */
const SIZE = 24 * MiB + 100 * KiB;
const SEED = fuzzSeed();

interface Ctx {
  h: BlksnapHarness;
  dev: string;
  repo: string;
  diff: string;
  env: NodeJS.ProcessEnv;
}

function bkp(c: Ctx, args: string[]) {
  const backup = ['full', 'incr'].includes(args[0]!);
  return runBkp([...args, '--repo', c.repo, ...(backup ? ['--diff-storage', c.diff, '--diff-storage-limit', '64M'] : [])], { env: c.env });
}

async function backup(c: Ctx, kind: 'full' | 'incr') {
  const r = await bkp(c, [kind, '--device', c.dev, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  return { id: res.backupId as string, dev: res.devices[0] };
}

async function restoreHash(c: Ctx, id: string): Promise<string> {
  const out = path.join(c.h.dir, `restore-${id}.img`);
  const r = await bkp(c, ['restore', '--backup', id, '--to', out]);
  assert.equal(r.code, 0, r.stderr);
  const h = await sha256Of(out);
  await fs.rm(out);
  return h;
}

describe('incrementals at piece granularity (fake module, 1 MiB regions, 64 KiB pieces)', () => {
  let c: Ctx;
  before(async () => {
    const h = await blksnapHarness('fake', { portionSectors: 16384 });
    const dev = await h.loop(SIZE, pattern(7));
    const repo = path.join(h.dir, 'repo');
    const diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    c = { h, dev, repo, diff, env: { BKP_BLKSNAP_FAKE: h.fakeDir } };
  });
  after(() => c.h.cleanup());

  test(`writes inside, across and at the edges of pieces and regions: reads what was marked, every point restores (seed ${SEED})`, async () => {
    const points: Array<[string, string]> = [];
    const full = await backup(c, 'full');
    points.push([full.id, await sha256Of(c.dev)]);

    // 1: one 4 KiB write inside a piece, one across two pieces, one across two regions, one at the device's end
    const edges = [
      [3 * MiB + 5 * 64 * KiB + 8 * KiB, 4 * KiB],
      [5 * MiB + 64 * KiB - 2 * KiB, 4 * KiB],
      [9 * MiB - 2 * KiB, 4 * KiB],
      [SIZE - 4 * KiB, 4 * KiB],
    ];
    for (const [o, n] of edges) await c.h.write(c.dev, o!, patternBuffer(100, o!, n!));
    const first = await backup(c, 'incr');
    assert.equal(first.dev.method.mode, 'cbt', JSON.stringify(first.dev.method));
    // right after a full, exactly the marked pieces are read (CBT blocks and pieces are both 64 KiB)
    assert.equal(first.dev.stats.bytesRead, first.dev.method.cbtChangedBytes);
    assert.equal(first.dev.stats.bytesRead, 5 * 64 * KiB + 36 * KiB, 'five whole pieces and the short last one');
    points.push([first.id, await sha256Of(c.dev)]);

    // then a chain of scattered writes: reads stay near what was marked (the union with earlier patches)
    const rnd = mulberry32(SEED);
    for (let round = 0; round < 6; round++) {
      for (let w = 0; w < 25; w++) {
        const o = Math.floor((rnd() * (SIZE - 8 * KiB)) / 512) * 512;
        await c.h.write(c.dev, o, patternBuffer(200 + round * 50 + w, o, 4 * KiB + Math.floor(rnd() * 4) * 512));
      }
      const inc = await backup(c, 'incr');
      assert.equal(inc.dev.method.mode, 'cbt');
      assert.ok(inc.dev.stats.bytesRead >= inc.dev.method.cbtChangedBytes, 'at least what was marked is read');
      assert.ok(inc.dev.stats.bytesRead < SIZE / 2, `read ${inc.dev.stats.bytesRead} bytes for ${inc.dev.method.cbtChangedBytes} marked`);
      points.push([inc.id, await sha256Of(c.dev)]);
    }
    for (const [id, hash] of points) assert.equal(await restoreHash(c, id), hash, `restore of ${id}`);

    // any backup in the middle can go on its own: remove one, gc (repacking), verify every chunk
    const gone = points.splice(3, 1)[0]![0];
    await fs.rm(path.join(c.repo, 'backups', gone), { recursive: true });
    const gc = await bkp(c, ['gc', '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    const v = await bkp(c, ['verify', '--read-data']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    for (const [id, hash] of points) assert.equal(await restoreHash(c, id), hash, `restore of ${id} after gc`);
  });

  test('a module reload falls back to digest: everything is read, only the changed pieces are stored', async () => {
    await backup(c, 'full'); // no patches left in the parent: what is stored is only what changed now
    const before = await sha256Of(c.dev);
    await c.h.fake!.reload();
    for (let w = 0; w < 10; w++) await c.h.write(c.dev, w * 2 * MiB + 12 * KiB, patternBuffer(900 + w, w * 2 * MiB, 4 * KiB));
    const inc = await backup(c, 'incr');
    assert.equal(inc.dev.method.mode, 'digest');
    assert.equal(inc.dev.stats.bytesRead, SIZE);
    // ten 4 KiB writes touch ten 64 KiB pieces: stored far below ten whole regions
    assert.ok(inc.dev.stats.bytesStored < 10 * 64 * KiB + 10 * 1024, `stored ${inc.dev.stats.bytesStored}`);
    assert.notEqual(await sha256Of(c.dev), before);
    assert.equal(await restoreHash(c, inc.id), await sha256Of(c.dev));
  });
});

test('--no-snapshot incremental after 1% random 4 KiB writes stores a small share of the full', async () => {
  const h = await blksnapHarness('fake');
  try {
    const img = path.join(h.dir, 'disk.img');
    const repo = path.join(h.dir, 'repo');
    const size = 64 * MiB;
    await makeImage(img, size, 'granular');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    const full = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
    assert.equal(full.code, 0, full.stderr);
    const fullStored = JSON.parse(full.stdout).devices[0].stats.bytesStored as number;
    await scribble(img, size, size / 4096 / 100, 'granular-1');
    const inc = await runBkp(['incr', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
    assert.equal(inc.code, 0, inc.stderr);
    const r = JSON.parse(inc.stdout);
    const stored = r.devices[0].stats.bytesStored as number;
    assert.equal(r.devices[0].method.mode, 'digest');
    assert.ok(stored <= 0.25 * fullStored, `incremental stored ${stored} bytes, the full ${fullStored}`);
    const out = path.join(h.dir, 'out.img');
    const res = await runBkp(['restore', '--repo', repo, '--backup', r.backupId, '--to', out]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await sha256Of(out), await sha256Of(img));
  } finally {
    await h.cleanup();
  }
});

test('zeros written over a patch of a zero region leave a zero region, not a stored patch of zeros', async () => {
  const h = await blksnapHarness('fake', { portionSectors: 16384 });
  try {
    const dev = await h.loop(8 * MiB, pattern(3));
    const repo = path.join(h.dir, 'repo');
    const diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    const c: Ctx = { h, dev, repo, diff, env: { BKP_BLKSNAP_FAKE: h.fakeDir } };
    await backup(c, 'full');
    await h.write(dev, MiB, Buffer.alloc(MiB)); // region 1 all zeros: a zero base
    const a = await backup(c, 'incr');
    await h.write(dev, MiB + 3 * 64 * KiB, patternBuffer(5, 0, 4 * KiB)); // a patch over it
    const b = await backup(c, 'incr');
    await h.write(dev, MiB + 3 * 64 * KiB, Buffer.alloc(4 * KiB)); // and zeros over the patch
    const z = await backup(c, 'incr');
    const region1 = async (id: string) => {
      const idx = decodeIndex(await fs.readFile(path.join(repo, 'backups', id, `${deviceKeyOf(dev)}.idx`)));
      return { zero: idx.entries.isZero(1), patch: idx.entries.hasPatch(1) };
    };
    assert.deepEqual(await region1(a.id), { zero: true, patch: false });
    assert.deepEqual(await region1(b.id), { zero: false, patch: true });
    assert.deepEqual(await region1(z.id), { zero: true, patch: false }, 'zeros over zeros are a zero region');
    assert.equal(z.dev.stats.bytesStored, 0);
    assert.equal(await restoreHash(c, z.id), await sha256Of(dev));
  } finally {
    await h.cleanup();
  }
});

test('a damaged chunk of the previous backup met by the digest comparison: stored anew, recorded, warned', async () => {
  const h = await blksnapHarness('fake');
  try {
    const img = path.join(h.dir, 'disk.img');
    const repo = path.join(h.dir, 'repo');
    await makeImage(img, 16 * MiB, 'granular-damage');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    const full = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
    assert.equal(full.code, 0, full.stderr);
    const id = JSON.parse(full.stdout).backupId as string;
    // a data region of the full, damaged in its pack; then one of its pieces changes on the device
    const idx = decodeIndex(await fs.readFile(path.join(repo, 'backups', id, `${deviceKeyOf(img)}.idx`)));
    const victim = refsOf(idx).find((r) => r.r % 2 === 0 && r.length > 4096)!;
    const pack = path.join(repo, packKey(victim.packId));
    const bytes = await fs.readFile(pack);
    bytes[victim.offset + 56 + 100]! ^= 0xff;
    await fs.writeFile(pack, bytes);
    const fh = await fs.open(img, 'r+');
    await fh.write(Buffer.alloc(4096, 7), 0, 4096, victim.i * MiB + 8192);
    await fh.close();
    const inc = await runBkp(['incr', '--repo', repo, '--device', img, '--no-snapshot', '--json']);
    assert.equal(inc.code, 0, inc.stderr);
    assert.match(inc.stderr, /previous backup's copy of device bytes \d+\+ is damaged .*recorded under damage\//);
    assert.ok((await fs.readdir(path.join(repo, 'damage', victim.packId))).length >= 1, 'a damage record');
    const r = JSON.parse(inc.stdout);
    const out = path.join(h.dir, 'out.img');
    const res = await runBkp(['restore', '--repo', repo, '--backup', r.backupId, '--to', out]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await sha256Of(out), await sha256Of(img));
  } finally {
    await h.cleanup();
  }
});
