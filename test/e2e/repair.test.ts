/**
 * Damage never spreads (issue 18, item 1): once verify --read-data found a chunk damaged, the
 * next full or incremental (digest or CBT) of a device that still holds the data stores it anew,
 * so the new backup restores byte-equal even after the damaged pack is gone. `bkp repair`
 * re-points old backups at a good copy, quarantines the damaged pack, lists what has no good copy
 * (exit 3), and --dry-run reports exactly that while changing nothing.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { promises as fs, existsSync } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, type BlksnapHarness } from '../support/blksnap-fake.js';
import { decodeIndex, type BackupIndex } from '../../src/repo/index-file.js';
import { refsOf } from '../support/index-refs.js';
import { packKey } from '../../src/repo/pack.js';
import { ExitCode } from '../../src/errors.js';
import { assertMatchesSchema } from '../support/json-schema.js';

const MiB = 1024 * 1024;

async function readIndex(repo: string, id: string): Promise<BackupIndex> {
  const dir = path.join(repo, 'backups', id);
  const [f] = await fs.readdir(dir);
  return decodeIndex(await fs.readFile(path.join(dir, f!)));
}

interface Damage {
  pack: string;
  /** Device ranges [start, end) whose chunk is the damaged envelope. */
  ranges: Array<[number, number]>;
}

/** Flips one byte in the payload of the `nth` data chunk of a backup; returns its pack and device ranges. */
async function damageChunk(repo: string, id: string, nth = 3): Promise<Damage> {
  const idx = await readIndex(repo, id);
  const data = refsOf(idx);
  const e = data[nth % data.length]!;
  const pack = e.packId;
  const file = path.join(repo, packKey(pack));
  const buf = await fs.readFile(file);
  buf[e.offset + 56 + Math.floor((e.length - 56) / 2)]! ^= 0x40;
  await fs.writeFile(file, buf);
  const ranges = data.filter((x) => x.packId === pack && x.offset === e.offset).flatMap((x) => x.ranges);
  return { pack, ranges };
}

/** Every file of the repository and a hash of its content: what a dry run must leave as it was. */
async function snapshotTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const ent of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (!p.includes(`${path.sep}locks${path.sep}`)) out.set(path.relative(dir, p), createHash('sha256').update(await fs.readFile(p)).digest('hex'));
    }
  };
  await walk(dir);
  return out;
}

async function restoredHash(repo: string, id: string, out: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out, '--force', '--quiet'], { env });
  assert.equal(r.code, 0, r.stderr);
  const h = await sha256Of(out);
  await fs.rm(out);
  return h;
}

async function verifyFinds(repo: string, pack: string, env: NodeJS.ProcessEnv = {}) {
  const v = await runBkp(['verify', '--repo', repo, '--read-data', '--json'], { env });
  assert.equal(v.code, ExitCode.CORRUPT, v.stdout + v.stderr);
  const res = JSON.parse(v.stdout);
  assertMatchesSchema(res, 'verify.schema.json');
  assert.deepEqual(res.damagedPacks, [pack]);
  assert.ok(res.damageRecorded >= 1);
}

const usesPack = (idx: BackupIndex, pack: string) => refsOf(idx).some((e) => e.packId === pack);

describe('damage never spreads into new backups (image files, --no-snapshot)', () => {
  const t = tempDir('bkp-repair-');
  after(() => t.cleanup());
  const img = path.join(t.dir, 'disk.img');
  const out = path.join(t.dir, 'out.img');
  let n = 0;
  const freshRepo = async () => {
    const repo = path.join(t.dir, `repo-${n++}`);
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '256K'])).code, 0);
    return repo;
  };
  const backup = async (repo: string, kind: 'full' | 'incr') => {
    const r = await runBkp([kind, '--repo', repo, '--device', img, '--no-snapshot', '--json', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assertMatchesSchema(res, 'backup.schema.json');
    return { id: res.backupId as string, dev: res.devices[0] };
  };
  before(() => makeImage(img, 4 * MiB, 'repair'));

  for (const kind of ['full', 'incr'] as const) {
    test(`a ${kind} after verify found a damaged chunk stores it anew and restores without the damaged pack`, async () => {
      const repo = await freshRepo();
      const want = await sha256Of(img);
      const first = await backup(repo, 'full');
      const d = await damageChunk(repo, first.id);
      await verifyFinds(repo, d.pack);

      const next = await backup(repo, kind);
      if (kind === 'incr') assert.equal(next.dev.method.mode, 'digest');
      assert.ok(next.dev.stats.chunksNew >= 1, JSON.stringify(next.dev.stats));
      assert.ok(next.dev.damagedReread >= 1, 'the output says chunks were read again');
      assert.equal(usesPack(await readIndex(repo, next.id), d.pack), false, 'the new backup does not point into the damaged pack');

      await fs.rm(path.join(repo, packKey(d.pack)));
      assert.equal(await restoredHash(repo, next.id, out), want, 'the new backup restores byte-equal without the damaged pack');
    });
  }

  test('repair re-points the old backup at the good copy a later backup stored; --dry-run says the same and changes nothing', async () => {
    const repo = await freshRepo();
    const want = await sha256Of(img);
    const first = await backup(repo, 'full');
    const d = await damageChunk(repo, first.id);
    await verifyFinds(repo, d.pack);
    await backup(repo, 'full'); // the device still holds the data: a good copy now exists

    const before = await snapshotTree(repo);
    const dry = await runBkp(['repair', '--repo', repo, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.deepEqual(await snapshotTree(repo), before, '--dry-run changes nothing');
    const dryText = await runBkp(['repair', '--repo', repo, '--dry-run']);
    assert.match(dryText.stdout, new RegExp(`would quarantine pack ${d.pack}`));
    assert.deepEqual(await snapshotTree(repo), before, '--dry-run changes nothing');

    const real = await runBkp(['repair', '--repo', repo, '--json']);
    assert.equal(real.code, 0, real.stdout + real.stderr);
    const r = JSON.parse(real.stdout);
    assertMatchesSchema(r, 'repair.schema.json');
    assertMatchesSchema(JSON.parse(dry.stdout), 'repair.schema.json');
    const { dryRun: dr, ...dryRest } = JSON.parse(dry.stdout);
    const { dryRun: rr, ...realRest } = r;
    assert.equal(dr, true);
    assert.equal(rr, false);
    assert.deepEqual(realRest, dryRest, 'the dry run reported exactly what the real run did');
    assert.equal(r.healed, true);
    assert.deepEqual(r.unrecoverable, []);
    assert.deepEqual(r.packs.map((p: { packId: string; quarantinedAs: string }) => [p.packId, p.quarantinedAs]), [[d.pack, `quarantine/${d.pack}.pack`]]);
    assert.ok(r.chunksRepointed >= 1);
    assert.equal(existsSync(path.join(repo, packKey(d.pack))), false, 'the damaged pack left packs/');
    assert.ok(existsSync(path.join(repo, 'quarantine', `${d.pack}.pack`)), 'and was kept under quarantine/');
    const records = (await fs.readdir(path.join(repo, 'damage'), { recursive: true, withFileTypes: true })).filter((x) => x.isFile());
    assert.deepEqual(records, [], 'its damage records are gone');

    assert.equal(await restoredHash(repo, first.id, out), want, 'the old backup restores byte-equal');
    const v = await runBkp(['verify', '--repo', repo, '--read-data']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const again = await runBkp(['repair', '--repo', repo]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to repair/);
  });

  test('repair with no good copy lists the unrecoverable range and exits 3; --dry-run says the same and changes nothing', async () => {
    const repo = await freshRepo();
    const first = await backup(repo, 'full');
    const copy = path.join(t.dir, 'first.img');
    await fs.copyFile(img, copy);
    const d = await damageChunk(repo, first.id);
    // a restore finds it and records it too
    const rs = await runBkp(['restore', '--repo', repo, '--backup', first.id, '--to', out, '--force', '--quiet']);
    assert.equal(rs.code, ExitCode.CORRUPT, rs.stderr);
    assert.ok((await fs.readdir(path.join(repo, 'damage', d.pack))).length >= 1, 'restore recorded the damage');

    const before = await snapshotTree(repo);
    const dry = await runBkp(['repair', '--repo', repo, '--dry-run', '--json']);
    assert.equal(dry.code, ExitCode.PARTIAL, dry.stdout + dry.stderr);
    assert.deepEqual(await snapshotTree(repo), before, '--dry-run changes nothing');
    const real = await runBkp(['repair', '--repo', repo, '--json']);
    assert.equal(real.code, ExitCode.PARTIAL, real.stdout + real.stderr);
    assertMatchesSchema(JSON.parse(real.stdout), 'repair.schema.json');
    const { dryRun: _d, ...dryRest } = JSON.parse(dry.stdout);
    const { dryRun: _r, ...r } = JSON.parse(real.stdout);
    assert.deepEqual(r, dryRest, 'the dry run reported exactly what the real run did');
    assert.equal(r.healed, false);
    assert.equal(r.unrecoverable.length, 1);
    assert.equal(r.unrecoverable[0].backupId, first.id);
    assert.deepEqual(
      r.unrecoverable[0].ranges.map((x: { offset: number; length: number }) => [x.offset, x.offset + x.length]),
      d.ranges,
      'exactly the damaged chunk is unrecoverable',
    );
    assert.ok(r.chunksCopied >= 1, 'the intact chunks of the damaged pack were copied out');
    const text = await runBkp(['repair', '--repo', repo]);
    assert.equal(text.code, ExitCode.PARTIAL);
    const [s, e] = d.ranges[0]!;
    assert.match(text.stdout, new RegExp(`UNRECOVERABLE ${first.id} \\S+: device bytes ${s}-${e - 1}:`));

    // everything else of the old backup is still there, out of the quarantined pack
    const ig = await runBkp(['restore', '--repo', repo, '--backup', first.id, '--to', out, '--force', '--ignore-errors', '--json', '--quiet']);
    assert.equal(ig.code, ExitCode.PARTIAL, ig.stderr);
    assert.deepEqual(JSON.parse(ig.stdout).damaged.map((x: { offset: number; length: number }) => [x.offset, x.offset + x.length]), d.ranges);
    const got = await fs.readFile(out);
    const wantBytes = await fs.readFile(copy);
    assert.ok(got.subarray(0, s).equals(wantBytes.subarray(0, s)) && got.subarray(e).equals(wantBytes.subarray(e)), 'every other byte restored');

    // a new backup of the device stores the chunk again; a second repair then heals the old one
    await backup(repo, 'full');
    const healed = await runBkp(['repair', '--repo', repo, '--json']);
    assert.equal(healed.code, 0, healed.stdout + healed.stderr);
    assert.equal(await restoredHash(repo, first.id, out), await sha256Of(copy));
  });
  test('a recorded pack that reads back intact again is only cleared: no quarantine, and dedup uses it again', async () => {
    const repo = await freshRepo();
    const first = await backup(repo, 'full');
    const idx = await readIndex(repo, first.id);
    const pack = idx.packs[0]!;
    const saved = await fs.readFile(path.join(repo, packKey(pack)));
    const d = await damageChunk(repo, first.id, 0);
    assert.equal(d.pack, pack);
    await verifyFinds(repo, pack);
    await fs.writeFile(path.join(repo, packKey(pack)), saved); // put back by hand

    const r = await runBkp(['repair', '--repo', repo, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(res.packsCleared, [pack]);
    assert.deepEqual(res.packs, []);
    assert.equal(res.indexesRewritten, 0);
    assert.ok(existsSync(path.join(repo, packKey(pack))), 'the pack stays where it is');
    const next = await backup(repo, 'full');
    assert.equal(next.dev.stats.chunksNew, 0, 'with its record gone, the pack is deduplicated against again');
  });

  test('repair re-points a backup whose pack is missing at the copy a later backup stored', async () => {
    const repo = await freshRepo();
    const want = await sha256Of(img);
    const first = await backup(repo, 'full');
    const pack = (await readIndex(repo, first.id)).packs[1]!;
    await fs.rm(path.join(repo, packKey(pack)));
    await backup(repo, 'full');
    const r = await runBkp(['repair', '--repo', repo, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(res.packs.map((p: { packId: string; state: string; quarantinedAs: null }) => [p.packId, p.state, p.quarantinedAs]), [[pack, 'missing', null]]);
    assert.equal(res.indexesRewritten, 1);
    assert.equal(await restoredHash(repo, first.id, out), want);
  });
});

describe('damage never spreads into a CBT incremental (blksnap fake)', () => {
  let h: BlksnapHarness;
  let dev: string;
  let repo: string;
  let diff: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    h = await blksnapHarness('fake', { portionSectors: 8192 });
    dev = await h.loop(16 * MiB, pattern(7));
    repo = path.join(h.dir, 'repo');
    diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    env = { BKP_BLKSNAP_FAKE: h.fakeDir };
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '256K'])).code, 0);
  });
  after(() => h.cleanup());

  const backup = async (kind: 'full' | 'incr') => {
    const r = await runBkp([kind, '--repo', repo, '--device', dev, '--diff-storage', diff, '--diff-storage-limit', '64M', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    return { id: res.backupId as string, dev: res.devices[0] };
  };

  test('an incr whose parent has damaged chunks in unchanged blocks reads them again from the device', async () => {
    const first = await backup('full');
    const d = await damageChunk(repo, first.id);
    await verifyFinds(repo, d.pack, env);

    const inc = await backup('incr'); // nothing written: CBT says every block is unchanged
    assert.equal(inc.dev.method.mode, 'cbt', JSON.stringify(inc.dev.method));
    assert.ok(inc.dev.damagedReread >= 1, JSON.stringify(inc.dev));
    assert.ok(inc.dev.stats.bytesRead > 0, 'the chunks of the damaged pack were read again');
    assert.equal(usesPack(await readIndex(repo, inc.id), d.pack), false, 'the incremental does not inherit the damaged pack');

    await fs.rm(path.join(repo, packKey(d.pack)));
    assert.equal(await restoredHash(repo, inc.id, path.join(h.dir, 'out.img'), env), await sha256Of(dev));
  });
});
