/**
 * Shared set-up of the module tests: bkp itself (the real CLI) against the blksnap module — the
 * real one when BKP_TEST_BLKSNAP_REAL=1 (in the kernel lab's VM: scripts/test-real.sh), else the
 * fake, held to the same expectations. Originals are loop devices written as applications write
 * (straight to the device, which the real module tracks; through the fake, which tracks for it).
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { REAL, blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';

export const MiB = 1024 * 1024;
export const KIND: 'fake' | 'real' = REAL ? 'real' : 'fake';
/** The module's default portion (diff_storage_minimum): 1 GiB. */
export const DEFAULT_PORTION_SECTORS = 2_097_152;
/** Difference storage bkp may use in these tests unless a test says otherwise. */
const DIFF_LIMIT = '2G';

export interface Ctx {
  h: BlksnapHarness;
  dev: string;
  size: number;
  repo: string;
  diff: string;
}

export async function setup(size = 64 * MiB): Promise<Ctx> {
  const h = await blksnapHarness(KIND, { portionSectors: DEFAULT_PORTION_SECTORS });
  const dev = await h.loop(size, pattern(1));
  const repo = path.join(h.dir, 'repo');
  const diff = path.join(h.dir, 'diff');
  await fs.mkdir(diff);
  const r = await runBkp(['init', '--repo', repo]);
  assert.equal(r.code, 0, r.stderr);
  return { h, dev, size, repo, diff };
}

function withRepo(c: Ctx, args: string[], diffLimit = DIFF_LIMIT): string[] {
  return [...args, '--repo', c.repo, ...(['full', 'incr'].includes(args[0]!) ? ['--diff-storage', c.diff, '--diff-storage-limit', diffLimit] : [])];
}

export function bkp(c: Ctx, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runBkp(withRepo(c, args), { env: { ...c.h.env, ...env }, timeoutMs: 600_000 });
}

export interface DeviceResult {
  device: string;
  backupId: string;
  method: { mode: string; reason?: string; cbtChangedBytes?: number; changedBytes: number };
  stats: { bytesRead: number; bytesStored: number; chunksNew: number };
}

export async function backup(c: Ctx, kind: 'full' | 'incr', devices = [c.dev]): Promise<{ id: string; devices: DeviceResult[] }> {
  const r = await bkp(c, [kind, ...devices.flatMap((d) => ['--device', d]), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  return { id: res.backupId, devices: res.devices };
}

export async function restoreHash(c: Ctx, id: string, device?: string): Promise<string> {
  const out = path.join(c.h.dir, `restore-${id}.img`);
  const r = await bkp(c, ['restore', '--backup', id, ...(device ? ['--device', device] : []), '--to', out]);
  assert.equal(r.code, 0, r.stderr);
  const h = await sha256Of(out);
  await fs.rm(out);
  return h;
}

/** 4 KiB writes at the given offsets, each with its own content. */
export async function writeBlocks(c: Ctx, dev: string, offsets: number[], seed: number): Promise<void> {
  for (const [i, offset] of offsets.entries()) await c.h.write(dev, offset, patternBuffer(seed * 1000 + i, offset, 4096));
}

export async function snapshotsInModule(c: Ctx): Promise<unknown[]> {
  const st = await runBkp(['status', '--json'], { env: c.h.env });
  assert.equal(st.code, 0, st.stderr);
  return JSON.parse(st.stdout).snapshots;
}

export async function noSnapshotsLeft(c: Ctx): Promise<void> {
  assert.deepEqual(await snapshotsInModule(c), [], 'every snapshot destroyed');
  assert.deepEqual(await fs.readdir(c.diff), [], 'every difference-storage file removed');
}

export async function listBackups(c: Ctx): Promise<Array<{ backupId: string; device: string }>> {
  const r = await bkp(c, ['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).backups;
}

/** Starts bkp paused right after its snapshot is taken; `resume()` lets it read the images. */
export async function startPaused(c: Ctx, args: string[], diffLimit = DIFF_LIMIT) {
  const flag = path.join(c.h.dir, `pause-${Date.now()}`);
  const child = spawn(process.execPath, [BKP, ...withRepo(c, args, diffLimit)], {
    env: { ...process.env, ...c.h.env, BKP_PAUSE_AT: `snapshot-taken:${flag}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((r) =>
    child.on('close', (code, signal) => r({ code, signal, stdout, stderr })),
  );
  for (let i = 0; !existsSync(`${flag}.reached`); i++) {
    if (i > 6000) throw new Error(`bkp never reached the pause point: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, done, resume: () => fs.rm(`${flag}.reached`) };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
