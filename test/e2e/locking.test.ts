/**
 * Two real bkp processes at once: one writer per repository, one bkp per device, readers never
 * blocked, and a killed holder's locks taken over with a warning.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp } from '../support/env.js';
import { blksnapHarness, pattern, type BlksnapHarness } from '../support/blksnap-fake.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;

describe('locking between processes', () => {
  let h: BlksnapHarness;
  let dev1: string;
  let dev2: string;
  let repoA: string;
  let repoB: string;
  let diff: string;
  let env: NodeJS.ProcessEnv;
  const backupArgs = (kind: string, dev: string, repo: string) => [kind, '--device', dev, '--repo', repo, '--diff-storage', diff, '--diff-storage-limit', '32M'];

  /** Starts a backup that holds its locks (paused at backup-locked) until resume(). */
  async function holder(args: string[]) {
    const flag = path.join(h.dir, `pause-${Date.now()}`);
    const child = spawn(process.execPath, [BKP, ...args], { env: { ...process.env, ...env, BKP_PAUSE_AT: `backup-locked:${flag}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((r) => child.on('close', (code, signal) => r({ code, signal, stderr })));
    for (let i = 0; !existsSync(`${flag}.reached`); i++) {
      if (i > 1500) throw new Error(`never reached the pause point: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return { pid: child.pid!, child, done, resume: () => fs.rm(`${flag}.reached`) };
  }

  before(async () => {
    h = await blksnapHarness('fake', { portionSectors: 8192 });
    dev1 = await h.loop(8 * MiB, pattern(21));
    dev2 = await h.loop(8 * MiB, pattern(22));
    repoA = path.join(h.dir, 'repoA');
    repoB = path.join(h.dir, 'repoB');
    diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    env = { BKP_BLKSNAP_FAKE: h.fakeDir };
    for (const r of [repoA, repoB]) assert.equal((await runBkp(['init', '--repo', r, '--chunk-size', '256K'])).code, 0);
    const first = await runBkp(backupArgs('full', dev2, repoA), { env });
    assert.equal(first.code, 0, first.stderr);
  });
  after(() => h.cleanup());

  test('a second writer exits at once with exit 11 naming pid, host and time; readers run', async () => {
    const a = await holder(backupArgs('full', dev1, repoA));
    try {
      const since = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
      const started = Date.now();
      // same device, another repository: the device lock
      const sameDev = await runBkp(backupArgs('incr', dev1, repoB), { env });
      assert.equal(sameDev.code, ExitCode.LOCKED, sameDev.stderr);
      assert.match(sameDev.stderr, new RegExp(`^bkp: device ${dev1} is locked by pid ${a.pid} on ${os.hostname()} since ${since} \\(bkp full ${dev1}\\)\\n$`));
      // another device, the same repository: the repository lock
      const sameRepo = await runBkp(backupArgs('incr', dev2, repoA), { env });
      assert.equal(sameRepo.code, ExitCode.LOCKED, sameRepo.stderr);
      assert.match(sameRepo.stderr, new RegExp(`^bkp: repository ${repoA} is locked by pid ${a.pid} on ${os.hostname()} since ${since} \\(bkp full ${dev1}\\)\\n$`));
      for (const cmd of [['gc'], ['prune', '--keep-last', '1']]) {
        const r = await runBkp([...cmd, '--repo', repoA]);
        assert.equal(r.code, ExitCode.LOCKED, `${cmd[0]}: ${r.stderr}`);
      }
      assert.ok(Date.now() - started < 20_000, 'refused at once, not after waiting');
      // readers are never blocked
      assert.equal((await runBkp(['list', '--repo', repoA])).code, 0);
      assert.equal((await runBkp(['verify', '--repo', repoA])).code, 0);
      const out = path.join(h.dir, 'r.img');
      const r = await runBkp(['restore', '--repo', repoA, '--device', dev2, '--to', out]);
      assert.equal(r.code, 0, r.stderr);
      // the other device into the other repository is independent
      const independent = await runBkp(backupArgs('full', dev2, repoB), { env });
      assert.equal(independent.code, 0, independent.stderr);
    } finally {
      await a.resume();
    }
    const done = await a.done;
    assert.equal(done.code, 0, done.stderr);
    assert.doesNotMatch(done.stderr, /stale/);
  });

  test('a holder killed with SIGKILL: the next run takes both locks over with a warning', async () => {
    const a = await holder(backupArgs('incr', dev1, repoA));
    a.child.kill('SIGKILL');
    const killed = await a.done;
    assert.equal(killed.signal, 'SIGKILL');
    const r = await runBkp(backupArgs('incr', dev1, repoA), { env });
    assert.equal(r.code, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('stale'));
    assert.equal(warnings.length, 2, r.stderr);
    assert.match(warnings[0]!, new RegExp(`^warning: taking over a stale lock on device ${dev1} of pid ${a.pid} \\(bkp incr ${dev1}, started .*\\), which is no longer running$`));
    assert.match(warnings[1]!, new RegExp(`^warning: taking over a stale lock on repository ${repoA} of pid ${a.pid}\\b`));
    const again = await runBkp(backupArgs('incr', dev1, repoA), { env });
    assert.equal(again.code, 0);
    assert.doesNotMatch(again.stderr, /stale/, 'released normally this time');
  });
});
