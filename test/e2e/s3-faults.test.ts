/**
 * Storage faults: bkp talks to the real S3 server through a proxy that injects 500s, 503
 * SlowDown, connection resets, delays past the socket timeout, cut-short bodies and answers
 * dropped after the server acted on the request, on a seeded
 * share of requests. Every run either completes correctly (restores byte-equal, verify
 * --read-data passes) or fails cleanly with nothing committed. Never a committed index that points
 * at missing or wrong data. Replay a failure with BKP_FUZZ_SEED=<seed printed>.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { newBucket, s3Endpoint, s3Env } from '../support/s3.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { fuzzSeed, mulberry32 } from '../support/random.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const seed = fuzzSeed();

let endpoint: string;
let proxy: FaultProxy;
let h: BlksnapHarness;
let diff: string;
before(async () => {
  endpoint = await s3Endpoint();
  proxy = await startFaultProxy({ upstream: endpoint, seed, rate: 0, maxDelayMs: 1500 });
  h = await blksnapHarness('fake', { portionSectors: 8192 });
  diff = path.join(h.dir, 'diff');
  await fs.mkdir(diff);
});
after(async () => {
  await proxy.close();
  await h.cleanup();
  console.log(`# fault proxy (seed ${seed}): ${JSON.stringify(proxy.counts)}`);
});

function run(args: string[], via: 'proxy' | 'direct', extra: NodeJS.ProcessEnv = {}) {
  const backup = ['full', 'incr'].includes(args[0]!) ? ['--diff-storage', diff, '--diff-storage-limit', '256M'] : [];
  return runBkp([...args, ...backup, '--s3-endpoint', via === 'proxy' ? proxy.endpoint : endpoint], {
    env: { ...s3Env(endpoint), BKP_BLKSNAP_FAKE: h.fakeDir, BKP_S3_SOCKET_TIMEOUT_MS: '1000', ...extra },
    timeoutMs: 300_000,
  });
}

async function backupIds(repo: string): Promise<string[]> {
  const r = await run(['list', '--repo', repo, '--json'], 'direct');
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout).backups as Array<{ backupId: string }>).map((b) => b.backupId);
}

async function restoredHash(repo: string, id: string, via: 'proxy' | 'direct' = 'direct'): Promise<string | undefined> {
  const out = path.join(h.dir, `restore-${randomBytes(4).toString('hex')}.img`);
  const r = await run(['restore', '--repo', repo, '--backup', id, '--to', out], via);
  if (r.code !== 0) {
    assert.equal(via, 'proxy', `a direct restore must work: ${r.stderr}`);
    await fs.rm(out, { force: true });
    return undefined;
  }
  const hash = await sha256Of(out);
  await fs.rm(out);
  return hash;
}

describe(`bkp through a fault-injecting proxy (seed ${seed})`, () => {
  test('backups complete correctly or fail cleanly; committed backups always restore', { timeout: 600_000 }, async () => {
    const rnd = mulberry32(seed ^ 0x5eed);
    const bucket = await newBucket(endpoint, 'faults');
    const repo = `s3://${bucket}/r`;
    const dev = await h.loop(16 * MiB, pattern(11));
    assert.equal((await run(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '1M'], 'direct')).code, 0);

    const committed = new Map<string, string>(); // backup id → device hash at backup time
    const outcome = { ok: 0, failedCleanly: 0 };
    // light faults (retries absorb them) and heavy ones with few attempts (runs fail)
    const plan: Array<{ kind: 'full' | 'incr'; rate: number; attempts: string }> = [
      { kind: 'full', rate: 0.12, attempts: '6' },
      { kind: 'incr', rate: 0.12, attempts: '6' },
      { kind: 'incr', rate: 0.6, attempts: '2' },
      { kind: 'incr', rate: 0.2, attempts: '6' },
      { kind: 'full', rate: 0.6, attempts: '2' },
      { kind: 'incr', rate: 0.3, attempts: '3' },
      { kind: 'full', rate: 0.15, attempts: '6' },
      { kind: 'incr', rate: 0.5, attempts: '2' },
      { kind: 'incr', rate: 0.12, attempts: '6' },
    ];
    for (const [i, step] of plan.entries()) {
      for (let w = 0; w < 30; w++) {
        const off = Math.floor(rnd() * (16 * MiB / 4096)) * 4096;
        await h.write(dev, off, patternBuffer(seed + i * 100 + w, off, 4096));
      }
      const devHash = await sha256Of(dev);
      const before = await backupIds(repo);
      proxy.setRate(step.rate);
      const r = await run([step.kind, '--repo', repo, '--device', dev, '--json'], 'proxy', { BKP_S3_MAX_ATTEMPTS: step.attempts });
      proxy.setRate(0);
      const afterIds = await backupIds(repo);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(r.stderr, /internal error/, r.stderr);
      if (r.code === 0) {
        outcome.ok++;
        const id = JSON.parse(r.stdout).backupId as string;
        assert.deepEqual(afterIds.sort(), [...before, id].sort(), 'exactly the new backup was committed');
        committed.set(id, devHash);
      } else {
        outcome.failedCleanly++;
        assert.equal(r.code, ExitCode.STORAGE_UNREACHABLE, `exit ${r.code}: ${r.stderr}`);
        assert.deepEqual(afterIds.sort(), before.sort(), `nothing committed by a failed run: ${r.stderr}`);
      }
    }
    // every committed backup restores byte-equal, directly and (faults permitting) through the proxy
    for (const [id, hash] of committed) assert.equal(await restoredHash(repo, id), hash, id);
    proxy.setRate(0.12);
    const last = [...committed.keys()].pop()!;
    const viaProxy = await restoredHash(repo, last, 'proxy');
    proxy.setRate(0);
    if (viaProxy !== undefined) assert.equal(viaProxy, committed.get(last));
    const v = await run(['verify', '--repo', repo, '--read-data'], 'direct');
    assert.equal(v.code, 0, v.stdout + v.stderr);
    // gc removes what the failed runs left (a stale lock from a run that could not release it is taken over)
    const g = await run(['gc', '--repo', repo], 'direct');
    assert.equal(g.code, 0, g.stderr);
    for (const [id, hash] of committed) assert.equal(await restoredHash(repo, id), hash, `${id} after gc`);
    console.log(`# runs: ${outcome.ok} completed, ${outcome.failedCleanly} failed cleanly; faults ${JSON.stringify(proxy.counts)}`);
    assert.ok(outcome.ok >= 1, 'some runs completed');
    const injected = Object.entries(proxy.counts).filter(([k]) => k !== 'pass').reduce((n, [, v]) => n + v, 0);
    assert.ok(injected >= 20, `faults were injected: ${injected}`);
  });
});
