/**
 * Every object is what its name says, a damaged index costs only its own backup, and verify tells
 * the truth (issue 18, items 11, 14 and 17): through the real CLI, on real files.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, scribble, sha256Of } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let repo: string;

beforeEach(async () => {
  t = tempDir();
  repo = path.join(t.dir, 'repo');
  assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '1M'])).code, 0);
});
afterEach(() => t.cleanup());

async function full(devices: string[]): Promise<string> {
  const r = await runBkp(['full', '--repo', repo, ...devices.flatMap((d) => ['--device', d]), '--no-snapshot', '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).backupId as string;
}

const idxOf = (backupId: string, key: string) => path.join(repo, 'backups', backupId, `${key}.idx`);

async function swap(a: string, b: string): Promise<void> {
  const tmp = `${a}.swap`;
  await fs.rename(a, tmp);
  await fs.rename(b, a);
  await fs.rename(tmp, b);
}

async function packFiles(): Promise<string[]> {
  return (await fs.readdir(path.join(repo, 'packs'), { recursive: true }))
    .map(String)
    .filter((f) => f.endsWith('.pack'))
    .map((f) => path.join(repo, 'packs', f))
    .sort();
}

test('the index files of two backups swapped: restore refuses (exit 12, naming the index), verify and list report both', async () => {
  const img = path.join(t.dir, 'disk.img');
  await makeImage(img, 4 * MiB, 'swap-1');
  const i1 = await full([img]);
  await makeImage(img, 4 * MiB, 'swap-2');
  const i2 = await full([img]);
  const key = (await fs.readdir(path.join(repo, 'backups', i1)))[0]!.replace(/\.idx$/, '');
  await swap(idxOf(i1, key), idxOf(i2, key));

  const r = await runBkp(['restore', '--repo', repo, '--backup', i1, '--to', path.join(t.dir, 'out.img')]);
  assert.equal(r.code, ExitCode.CORRUPT, `restore of a swapped index: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`index backups/${i1}/${key}\\.idx is damaged: its header names backup ${i2}`));
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');

  const v = await runBkp(['verify', '--repo', repo, '--json']);
  assert.equal(v.code, ExitCode.CORRUPT, v.stdout);
  const bad = JSON.parse(v.stdout).backups.filter((b: { ok: boolean }) => !b.ok).map((b: { backupId: string }) => b.backupId);
  assert.deepEqual(bad, [i1, i2]);

  const l = await runBkp(['list', '--repo', repo, '--json']);
  assert.equal(l.code, 0, l.stderr);
  assert.deepEqual(
    JSON.parse(l.stdout).backups.map((b: { damaged?: string }) => /is damaged: its header names backup/.test(b.damaged ?? '')),
    [true, true],
  );
});

test('the index files of two devices of one backup swapped: restore of either refuses with exit 12', async () => {
  const a = path.join(t.dir, 'a.img');
  const b = path.join(t.dir, 'b.img');
  await makeImage(a, 2 * MiB, 'dev-a');
  await makeImage(b, 2 * MiB, 'dev-b');
  const id = await full([a, b]);
  const files = (await fs.readdir(path.join(repo, 'backups', id))).sort();
  assert.equal(files.length, 2);
  await swap(path.join(repo, 'backups', id, files[0]!), path.join(repo, 'backups', id, files[1]!));
  for (const dev of [a, b]) {
    const r = await runBkp(['restore', '--repo', repo, '--device', dev, '--to', path.join(t.dir, 'out.img'), '--force']);
    assert.equal(r.code, ExitCode.CORRUPT, `restore of ${dev}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /\.idx is damaged: its header names backup \S+ device \S+, not the backup and device of its name/);
  }
  // an incremental never takes a swapped index as its parent, and gc refuses to repack under it
  const g = await runBkp(['gc', '--repo', repo]);
  assert.equal(g.code, ExitCode.CORRUPT, g.stderr);
});

test('one bit flipped in one index header: list still lists every other backup and marks that one; prune keeps it', async () => {
  const img = path.join(t.dir, 'disk.img');
  await makeImage(img, 2 * MiB, 'flip');
  const ids = [await full([img]), await full([img]), await full([img])];
  const dir = path.join(repo, 'backups', ids[1]!);
  const idx = path.join(dir, (await fs.readdir(dir))[0]!);
  const b = await fs.readFile(idx);
  const at = b.indexOf('"device"');
  b[at + 1]! ^= 0x01; // "device" → "eevice": valid JSON, the field is gone
  await fs.writeFile(idx, b);

  for (const args of [['list', '--repo', repo], ['list', '--repo', repo, '--json']]) {
    const l = await runBkp(args);
    assert.equal(l.code, 0, `${args.join(' ')}: ${l.stderr}`);
    assert.doesNotMatch(l.stderr, /internal error/);
  }
  const text = (await runBkp(['list', '--repo', repo])).stdout;
  assert.match(text, new RegExp(`${ids[1]}.*DAMAGED: index .* is damaged`));
  const rows = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups;
  assert.deepEqual(rows.map((r: { backupId: string }) => r.backupId), ids);
  assert.equal(typeof rows[1].damaged, 'string');
  assert.equal(rows[0].damaged, undefined);
  assert.equal(rows[2].damaged, undefined);

  // the other backups still restore
  const out = path.join(t.dir, 'out.img');
  assert.equal((await runBkp(['restore', '--repo', repo, '--backup', ids[2]!, '--to', out])).code, 0);
  assert.equal(await sha256Of(out), await sha256Of(img));

  // prune judges the readable backups, keeps the damaged one and names it; gc keeps every pack
  const p = await runBkp(['prune', '--repo', repo, '--keep-last', '1']);
  assert.equal(p.code, ExitCode.CORRUPT, p.stdout + p.stderr);
  assert.match(p.stderr, new RegExp(`kept ${ids[1]} .*is damaged`));
  assert.match(p.stderr, new RegExp(`prune removed 1 backup\\(s\\), but gc stopped: index backups/${ids[1]}/`));
  const left = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups.map((r: { backupId: string }) => r.backupId);
  assert.deepEqual(left, [ids[1], ids[2]]);
});

test('garbage appended to a pack, or its trailer damaged: verify reports the pack', async () => {
  const img = path.join(t.dir, 'disk.img');
  await fs.writeFile(img, randomBytes(3 * MiB)); // incompressible: three packs of 1 MiB
  await full([img]);
  const [p1, p2] = await packFiles();
  assert.ok(p2, 'two packs at least');
  await fs.appendFile(p1!, Buffer.from('appended garbage'));
  const b = await fs.readFile(p2!);
  b[b.length - 30]! ^= 0x40; // inside the trailer's last entry
  await fs.writeFile(p2!, b);
  for (const args of [['verify', '--repo', repo], ['verify', '--repo', repo, '--read-data']]) {
    const v = await runBkp([...args, '--json']);
    assert.equal(v.code, ExitCode.CORRUPT, `${args.join(' ')}: ${v.stdout}${v.stderr}`);
    const res = JSON.parse(v.stdout);
    assert.equal(res.ok, false);
    const named = res.packs.map((p: { packId: string; problem: string }) => `${p.packId}: ${p.problem}`).join('\n');
    assert.match(named, new RegExp(`${path.basename(p1!, '.pack')}: .*footer`));
    assert.match(named, new RegExp(`${path.basename(p2!, '.pack')}: .*trailer`));
    const text = await runBkp(args);
    assert.match(text.stdout, /DAMAGED pack [0-9a-f]{32}/);
    assert.doesNotMatch(text.stdout, /no damage found/);
  }
});

test('two pack files swapped: verify names the backup without reading data, restore refuses', async () => {
  const img = path.join(t.dir, 'disk.img');
  await fs.writeFile(img, randomBytes(3 * MiB));
  const id = await full([img]);
  const [p1, p2] = await packFiles();
  await swap(p1!, p2!);
  const v = await runBkp(['verify', '--repo', repo, '--json']);
  assert.equal(v.code, ExitCode.CORRUPT, v.stdout);
  const [b] = JSON.parse(v.stdout).backups;
  assert.equal(b.backupId, id);
  assert.match(b.problems.join('\n'), new RegExp(`pack ${path.basename(p1!, '.pack')} does not hold the chunks the index names`));
  const r = await runBkp(['restore', '--repo', repo, '--to', path.join(t.dir, 'out.img')]);
  assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
});

test('a deleted index: verify does not say "no damage found" and names what no index explains', async () => {
  const img = path.join(t.dir, 'disk.img');
  await fs.writeFile(img, randomBytes(2 * MiB));
  const i1 = await full([img]);
  await fs.writeFile(img, randomBytes(2 * MiB)); // nothing in common: the first backup's packs are its own
  await full([img]);
  const dir = path.join(repo, 'backups', i1);
  await fs.rm(path.join(dir, (await fs.readdir(dir))[0]!));
  const v = await runBkp(['verify', '--repo', repo]);
  assert.equal(v.code, 0, 'what is present is undamaged');
  assert.doesNotMatch(v.stdout, /no damage found/);
  assert.match(v.stdout, /pack\(s\) .* referenced by no index/);
  assert.match(v.stdout, new RegExp(`backups/${i1}/ holds no index`));
  const j = JSON.parse((await runBkp(['verify', '--repo', repo, '--json'])).stdout);
  assert.ok(j.unreferencedPacks.length > 0);
  assert.deepEqual(j.backupsWithoutIndex, [i1]);
});

test('verify --read-data while gc repacks: no false damage; true damage is still found', async () => {
  const img = path.join(t.dir, 'disk.img');
  const SIZE = 8 * MiB;
  await makeImage(img, SIZE, 'race');
  let prev = await full([img]);
  let falseAlarms = 0;
  let raced = 0; // verifies that saw an index rewritten under them and checked again
  const TRIES = 8;
  for (let i = 0; i < TRIES; i++) {
    await scribble(img, SIZE, 400, `race-${i}`); // most chunks change: the old packs become mostly garbage
    const id = await full([img]);
    const dir = path.join(repo, 'backups', prev);
    await fs.rm(path.join(dir, (await fs.readdir(dir))[0]!));
    prev = id;
    const [v, g] = await Promise.all([runBkp(['verify', '--repo', repo, '--read-data']), runBkp(['gc', '--repo', repo, '--json'])]);
    assert.equal(g.code, 0, g.stderr);
    assert.ok(JSON.parse(g.stdout).packsRepacked > 0, 'gc repacked');
    if (/checked \d+ times/.test(v.stdout)) raced++;
    if (v.code !== 0) {
      falseAlarms++;
      console.log(`# try ${i}: ${v.stdout}${v.stderr}`);
    }
  }
  console.log(`# ${raced} of ${TRIES} verifies met a rewritten index and checked again`);
  assert.equal(falseAlarms, 0, `false damage in ${falseAlarms} of ${TRIES} tries`);

  // true damage while gc runs is still reported
  const packs = await packFiles();
  const b = await fs.readFile(packs[0]!);
  b[100]! ^= 0x01;
  await fs.writeFile(packs[0]!, b);
  const [v] = await Promise.all([runBkp(['verify', '--repo', repo, '--read-data']), runBkp(['gc', '--repo', repo])]);
  assert.equal(v.code, ExitCode.CORRUPT, v.stdout);
  assert.match(v.stdout, /checksum mismatch/);
});
