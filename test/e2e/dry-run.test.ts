/**
 * `prune --dry-run` and `gc --dry-run` report exactly what the real run then does: the same packs
 * removed and repacked, the same bytes — with and without repacking.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;
const CHUNK = 64 * KiB;

/** Two backups of one image: the second after `rewrite` chunks of every 4 were overwritten. */
async function twoBackups(dir: string, rewrite: 4 | 3): Promise<{ repo: string; first: string }> {
  const repo = path.join(dir, `repo-${rewrite}`);
  const img = path.join(dir, `disk-${rewrite}.img`);
  await fs.writeFile(img, randomBytes(SIZE)); // incompressible: packs fill predictably
  assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '1M'])).code, 0);
  const full = async () => {
    const r = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--json', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { backupId: string }).backupId;
  };
  const first = await full();
  const fh = await fs.open(img, 'r+');
  for (let c = 0; c < SIZE / CHUNK; c++) if (c % 4 < rewrite) await fh.write(randomBytes(CHUNK), 0, CHUNK, c * CHUNK);
  await fh.close();
  await full();
  return { repo, first };
}

async function packFiles(repo: string): Promise<string[]> {
  return (await fs.readdir(path.join(repo, 'packs'), { recursive: true })).map(String).filter((f) => f.endsWith('.pack')).sort();
}

type GcNumbers = Record<'packsKept' | 'packsRemoved' | 'bytesRemoved' | 'packsRepacked' | 'bytesRepacked' | 'indexesRewritten' | 'leftoversRemoved', number>;
const numbers = (gc: GcNumbers & { dryRun: boolean }) => {
  const { dryRun: _, ...rest } = gc;
  return rest;
};

async function dryThenReal(args: string[], repo: string): Promise<{ dry: GcNumbers; real: GcNumbers; gone: number }> {
  const before = await packFiles(repo);
  const d = await runBkp([...args, '--dry-run', '--json']);
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(await packFiles(repo), before, 'the dry run changed nothing');
  const r = await runBkp([...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const pick = (out: string) => {
    const j = JSON.parse(out) as { gc?: GcNumbers & { dryRun: boolean } } & GcNumbers & { dryRun: boolean };
    return numbers(j.gc ?? j);
  };
  const after = new Set(await packFiles(repo));
  return { dry: pick(d.stdout), real: pick(r.stdout), gone: before.filter((p) => !after.has(p)).length };
}

for (const [name, rewrite, repacks] of [
  ['whole packs unreferenced (no repacking)', 4, false],
  ['packs mostly unreferenced (repacked)', 3, true],
] as const) {
  test(`prune --dry-run reports what prune then does: ${name}`, async () => {
    const t = tempDir();
    try {
      const { repo } = await twoBackups(t.dir, rewrite);
      const { dry, real, gone } = await dryThenReal(['prune', '--repo', repo, '--keep-last', '1'], repo);
      assert.deepEqual(dry, real, 'the same numbers');
      assert.ok(real.packsRemoved > 0, 'packs were removed');
      assert.equal(real.packsRemoved, gone, 'as many packs as are gone');
      assert.equal(real.packsRepacked > 0, repacks, `repacked: ${real.packsRepacked}`);
    } finally {
      t.cleanup();
    }
  });

  test(`gc --dry-run reports what gc then does: ${name}`, async () => {
    const t = tempDir();
    try {
      const { repo, first } = await twoBackups(t.dir, rewrite);
      await fs.rm(path.join(repo, 'backups', first), { recursive: true }); // as a prune leaves it before its gc
      const { dry, real, gone } = await dryThenReal(['gc', '--repo', repo], repo);
      assert.deepEqual(dry, real, 'the same numbers');
      assert.ok(real.packsRemoved > 0, 'packs were removed');
      assert.equal(real.packsRemoved, gone, 'as many packs as are gone');
      assert.equal(real.packsRepacked > 0, repacks, `repacked: ${real.packsRepacked}`);
    } finally {
      t.cleanup();
    }
  });
}
