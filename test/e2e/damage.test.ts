/**
 * Seeded damage to a repository of several backups that share packs: a bit flipped in a chunk
 * envelope, an index or a pack trailer, a pack cut short or deleted, an index cut short. For each:
 * `verify --read-data` names exactly the backups that lost something (no more, no fewer), and the
 * pack whose footer or trailer is damaged (which no backup reads, but recovery without an index does); a
 * restore of a damaged backup fails with the device range it affects; `restore --ignore-errors`
 * writes zeros exactly there, lists those ranges and exits 3; an undamaged backup restores
 * byte-equal. BKP_TEST_SEED replays a run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, scribble, sha256Of } from '../support/data.js';
import { mulberry32 } from '../support/random.js';
import { decodeIndex, type BackupIndex } from '../../src/repo/index-file.js';
import { refsOf } from '../support/index-refs.js';
import { packKey } from '../../src/repo/pack.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
/** Regions of 4 pieces: the incrementals' digest fallback stores patches, and they get damaged too. */
const CHUNK = 256 * 1024;
const SEED = Number(process.env.BKP_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = 12;

interface Backup {
  id: string;
  key: string;
  /** The image as it was backed up. */
  copy: string;
  hash: string;
  index: BackupIndex;
}

type Range = [number, number]; // device [start, end)

const t = tempDir('bkp-damage-');
const pristine = path.join(t.dir, 'pristine');
const backups: Backup[] = [];

before(async () => {
  const a = path.join(t.dir, 'a.img');
  const b = path.join(t.dir, 'b.img');
  await makeImage(a, SIZE, 'damage-a');
  await makeImage(b, SIZE, 'damage-b');
  assert.equal((await runBkp(['init', '--repo', pristine, '--chunk-size', String(CHUNK), '--pack-size', '1M'])).code, 0);
  const take = async (kind: 'full' | 'incr', img: string) => {
    const r = await runBkp([kind, '--repo', pristine, '--device', img, '--no-snapshot', '--json', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const id = JSON.parse(r.stdout).backupId as string;
    const copy = path.join(t.dir, `${id}.img`);
    await fs.copyFile(img, copy);
    const key = JSON.parse(r.stdout).devices[0].deviceKey as string;
    const index = decodeIndex(await fs.readFile(path.join(pristine, 'backups', id, `${key}.idx`)));
    backups.push({ id, key, copy, hash: await sha256Of(copy), index });
  };
  await take('full', a);
  await scribble(a, SIZE, 40, 'one');
  await take('incr', a);
  await scribble(a, SIZE, 40, 'two');
  await take('incr', a);
  await take('full', b);
});
after(() => t.cleanup());

/** Device ranges of backup `b` whose chunk lies in `pack` and satisfies `hit(offset, length)`. */
function rangesIn(b: Backup, pack: string, hit: (offset: number, length: number) => boolean): Range[] {
  const out: Range[] = [];
  for (const e of refsOf(b.index)) if (e.packId === pack && hit(e.offset, e.length)) out.push(...e.ranges);
  return out;
}

function merge(ranges: Range[]): Range[] {
  const out: Range[] = [];
  for (const r of [...ranges].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1];
    if (last && last[1] === r[0]) last[1] = r[1];
    else out.push([...r]);
  }
  return out;
}

interface Fault {
  what: string;
  /** Damaged backups → the device ranges each lost (empty list: the index itself). */
  expected: Map<string, Range[]>;
  /** A pack whose own structure (footer, trailer) verify must report, though no backup reads it. */
  pack?: string;
}

async function inflict(repo: string, kind: number, rnd: () => number): Promise<Fault> {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const expected = new Map<string, Range[]>();
  const expect = (hit: (b: Backup) => Range[]) => {
    for (const b of backups) {
      const r = hit(b);
      if (r.length) expected.set(b.id, r);
    }
  };
  const allPacks = [...new Set(backups.flatMap((b) => b.index.packs))];
  switch (kind) {
    case 0: {
      // one bit of one chunk envelope
      const b = pick(backups);
      const e = pick(refsOf(b.index));
      const pack = e.packId;
      const file = path.join(repo, packKey(pack));
      const buf = await fs.readFile(file);
      const at = e.offset + Math.floor(rnd() * e.length);
      buf[at]! ^= 1 << Math.floor(rnd() * 8);
      await fs.writeFile(file, buf);
      expect((x) => rangesIn(x, pack, (o) => o === e.offset));
      return { what: `bit flipped at byte ${at} of pack ${pack}`, expected };
    }
    case 1: {
      // a pack cut short anywhere (maybe only its trailer)
      const pack = pick(allPacks);
      const file = path.join(repo, packKey(pack));
      const size = Math.floor(rnd() * (await fs.stat(file)).size);
      await fs.truncate(file, size);
      expect((x) => rangesIn(x, pack, (o, l) => o + l > size));
      return { what: `pack ${pack} cut to ${size} bytes`, expected, pack }; // its footer is gone from the end
    }
    case 2: {
      const pack = pick(allPacks);
      await fs.rm(path.join(repo, packKey(pack)));
      expect((x) => rangesIn(x, pack, () => true));
      return { what: `pack ${pack} deleted`, expected };
    }
    case 3: {
      // a bit of a pack's trailer or footer: no backup reads it, verify reports the pack (the
      // index-less recovery needs it) unless the bit is in the footer's unchecked reserved bytes
      const pack = pick(allPacks);
      const file = path.join(repo, packKey(pack));
      const buf = await fs.readFile(file);
      let end = 0; // the envelopes end where the first trailer entry starts
      for (const b of backups) {
        for (const e of refsOf(b.index)) if (e.packId === pack) end = Math.max(end, e.offset + e.length);
      }
      const at = end + Math.floor(rnd() * (buf.length - end));
      const trailerStart = buf.length - 16 - 48 * buf.readUInt32LE(buf.length - 16);
      const reserved = at >= buf.length - 11 && at < buf.length - 8;
      buf[at]! ^= 1 << Math.floor(rnd() * 8);
      await fs.writeFile(file, buf);
      return { what: `bit flipped in the trailer of pack ${pack} (byte ${at})`, expected, pack: at >= trailerStart && !reserved ? pack : undefined };
    }
    case 4: {
      const b = pick(backups);
      const file = path.join(repo, 'backups', b.id, `${b.key}.idx`);
      const buf = await fs.readFile(file);
      const at = Math.floor(rnd() * buf.length);
      buf[at]! ^= 1 << Math.floor(rnd() * 8);
      await fs.writeFile(file, buf);
      expected.set(b.id, []);
      return { what: `bit flipped at byte ${at} of the index of ${b.id}`, expected };
    }
    default: {
      const b = pick(backups);
      const file = path.join(repo, 'backups', b.id, `${b.key}.idx`);
      const size = Math.floor(rnd() * (await fs.stat(file)).size);
      await fs.truncate(file, size);
      expected.set(b.id, []);
      return { what: `index of ${b.id} cut to ${size} bytes`, expected };
    }
  }
}

const within = (r: Range, rs: Range[]) => rs.some(([s, e]) => r[0] >= s && r[1] <= e);

/** The restored image equals the backed-up one outside `zeroed`, and reads as zeros inside. */
async function compareOutside(out: string, copy: string, zeroed: Range[]): Promise<void> {
  const got = await fs.readFile(out);
  const want = await fs.readFile(copy);
  assert.equal(got.length, want.length);
  let at = 0;
  for (const [s, e] of zeroed) {
    assert.ok(got.subarray(at, s).equals(want.subarray(at, s)), `bytes ${at}-${s - 1} restored`);
    assert.ok(got.subarray(s, e).every((x) => x === 0), `bytes ${s}-${e - 1} are zeros`);
    at = e;
  }
  assert.ok(got.subarray(at).equals(want.subarray(at)), `bytes from ${at} restored`);
}

test(`seeded damage: verify names exactly the damaged backups, restore names the range (seed ${SEED})`, async (tt) => {
  tt.diagnostic(`damage seed ${SEED} (replay with BKP_TEST_SEED=${SEED})`);
  const rnd = mulberry32(SEED);
  const tally = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    const repo = path.join(t.dir, `repo-${round}`);
    await fs.cp(pristine, repo, { recursive: true });
    const kind = round % 6;
    const fault = await inflict(repo, kind, rnd);
    const ctx = `round ${round}: ${fault.what} (seed ${SEED})`;
    const name = ['envelope bit', 'pack cut', 'pack deleted', 'trailer bit', 'index bit', 'index cut'][kind]!;
    tally.set(name, (tally.get(name) ?? 0) + 1);

    const v = await runBkp(['verify', '--repo', repo, '--read-data', '--json']);
    assert.equal(v.code, fault.expected.size || fault.pack ? ExitCode.CORRUPT : 0, `${ctx}: verify exit code: ${v.stdout}${v.stderr}`);
    const named = (JSON.parse(v.stdout).backups as Array<{ backupId: string; ok: boolean }>).filter((b) => !b.ok).map((b) => b.backupId);
    assert.deepEqual(named.sort(), [...fault.expected.keys()].sort(), `${ctx}: verify names exactly the damaged backups`);
    const packs = (JSON.parse(v.stdout).packs as Array<{ packId: string }>).map((p) => p.packId);
    assert.deepEqual(packs, fault.pack ? [fault.pack] : [], `${ctx}: verify names exactly the damaged pack`);

    const out = path.join(t.dir, `out-${round}.img`);
    for (const [id, lost] of fault.expected) {
      const b = backups.find((x) => x.id === id)!;
      const r = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out, '--force', '--quiet']);
      assert.equal(r.code, ExitCode.CORRUPT, `${ctx}: restore of ${id}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${ctx}: one line: ${r.stderr}`);
      const ig = await runBkp(['restore', '--repo', repo, '--backup', id, '--to', out, '--force', '--ignore-errors', '--json', '--quiet']);
      if (lost.length === 0) {
        assert.match(r.stderr, /index .* is damaged/, ctx);
        assert.equal(ig.code, ExitCode.CORRUPT, `${ctx}: nothing to restore without the index: ${ig.stderr}`);
        continue;
      }
      const m = /device bytes (\d+)-(\d+)/.exec(r.stderr);
      assert.ok(m, `${ctx}: the error names a device range: ${r.stderr}`);
      assert.ok(within([Number(m[1]), Number(m[2]) + 1], merge(lost)), `${ctx}: ${m[0]} is one that was damaged (${JSON.stringify(merge(lost))})`);

      assert.equal(ig.code, ExitCode.PARTIAL, `${ctx}: --ignore-errors exits 3: ${ig.stderr}`);
      const listed = [...ig.stderr.matchAll(/DAMAGED device bytes (\d+)-(\d+) written as zeros/g)].map((x): Range => [Number(x[1]), Number(x[2]) + 1]);
      assert.deepEqual(merge(listed), merge(lost), `${ctx}: --ignore-errors lists exactly the damaged ranges`);
      assert.deepEqual(
        merge((JSON.parse(ig.stdout).damaged as Array<{ offset: number; length: number }>).map((d): Range => [d.offset, d.offset + d.length])),
        merge(lost),
      );
      await compareOutside(out, b.copy, merge(lost)).catch((e: Error) => assert.fail(`${ctx}: ${e.message}`));
    }
    const intact = backups.filter((b) => !fault.expected.has(b.id));
    if (intact.length) {
      const b = intact[Math.floor(rnd() * intact.length)]!;
      const r = await runBkp(['restore', '--repo', repo, '--backup', b.id, '--to', out, '--force', '--quiet']);
      assert.equal(r.code, 0, `${ctx}: ${b.id} is not damaged: ${r.stderr}`);
      assert.equal(await sha256Of(out), b.hash, `${ctx}: ${b.id} restores byte-equal`);
    }
    await fs.rm(repo, { recursive: true });
    await fs.rm(out, { force: true });
  }
  tt.diagnostic(`damage seed ${SEED}: ${[...tally].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
});
