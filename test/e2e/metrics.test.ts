/**
 * --metrics-file through the real command line (issue 18 items 8 and 18): a metrics path that
 * cannot be written is refused before anything is stored; a metrics file that fails after the
 * backup was committed is exit 4 ("done, but"), never a code that reads as "nothing stored";
 * verify, prune and gc write metrics too; a job that never succeeded has a last success of 0.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs, existsSync } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage } from '../support/data.js';
import { parsePrometheusText, sampleOf, type Sample } from '../support/prometheus.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;

describe('--metrics-file', () => {
  const t = tempDir('bkp-metrics-e2e-');
  const img = path.join(t.dir, 'disk.img');
  const repo = path.join(t.dir, 'repo');
  const full = (extra: string[], env: NodeJS.ProcessEnv = {}) => runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--quiet', ...extra], { env });
  const backups = async (): Promise<number> => JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout).backups.length;
  const samples = async (file: string): Promise<Sample[]> => parsePrometheusText(await fs.readFile(file, 'utf8')).samples;

  before(async () => {
    await makeImage(img, 4 * MiB, 'metrics');
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '256K'])).code, 0);
  });
  after(() => t.cleanup());

  test('a metrics file in a missing directory: refused before the backup, nothing stored', async () => {
    const r = await full(['--metrics-file', path.join(t.dir, 'missing', 'bkp.prom')]);
    assert.equal(r.code, ExitCode.DEVICE_MISSING, r.stderr);
    assert.equal(r.stderr, `bkp: the directory of metrics file ${path.join(t.dir, 'missing', 'bkp.prom')} does not exist\n`);
    assert.equal(await backups(), 0, 'no backup was made');
  });

  test('a metrics file that cannot be written after the commit: exit 4, the backup is stored', async () => {
    const dir = path.join(t.dir, 'vanishing');
    await fs.mkdir(dir);
    const flag = path.join(t.dir, 'pause');
    const running = full(['--metrics-file', path.join(dir, 'bkp.prom')], { BKP_PAUSE_AT: `backup-locked:${flag}` });
    while (!existsSync(`${flag}.reached`)) await new Promise((r) => setTimeout(r, 20));
    await fs.rm(dir, { recursive: true }); // the directory goes away while the backup runs
    await fs.rm(`${flag}.reached`);
    const r = await running;
    assert.equal(r.code, ExitCode.WARNINGS, r.stderr);
    assert.match(r.stderr, /^bkp: done, but the directory of metrics file .*bkp\.prom does not exist$/m);
    assert.equal(await backups(), 1, 'the backup is committed');
  });

  test('a job that never succeeded: last success 0, so the age alert fires', async () => {
    const file = path.join(t.dir, 'never.prom');
    const r = await runBkp(['full', '--repo', repo, '--device', path.join(t.dir, 'gone.img'), '--no-snapshot', '--metrics-file', file]);
    assert.equal(r.code, ExitCode.DEVICE_MISSING);
    const m = await samples(file);
    assert.equal(sampleOf(m, 'bkp_last_success_timestamp_seconds')!.value, 0);
    assert.equal(sampleOf(m, 'bkp_last_run_exit_code')!.value, ExitCode.DEVICE_MISSING);
    // then a success, then a failure: the success is kept
    assert.equal((await full(['--metrics-file', file])).code, 0);
    const ok = sampleOf(await samples(file), 'bkp_last_success_timestamp_seconds')!.value;
    assert.ok(ok > Date.now() / 1000 - 60);
    const info = sampleOf(await samples(file), 'bkp_last_run_info', { device: img })!;
    assert.deepEqual(Object.keys(info.labels).sort(), ['device', 'fallback_reason', 'kind', 'mode'], 'no backup_id label');
    await runBkp(['full', '--repo', repo, '--device', path.join(t.dir, 'gone.img'), '--no-snapshot', '--metrics-file', file]);
    assert.equal(sampleOf(await samples(file), 'bkp_last_success_timestamp_seconds')!.value, ok);
  });

  test('verify, prune and gc write metrics labelled with their command', async () => {
    const v = path.join(t.dir, 'verify.prom');
    assert.equal((await runBkp(['verify', '--repo', repo, '--read-data', '--metrics-file', v])).code, 0);
    let m = await samples(v);
    assert.equal(sampleOf(m, 'bkp_last_run_exit_code', { bkp_command: 'verify' })!.value, 0);
    assert.equal(sampleOf(m, 'bkp_last_run_backups_checked', { bkp_command: 'verify' })!.value, await backups());
    assert.equal(sampleOf(m, 'bkp_last_run_backups_damaged', { bkp_command: 'verify' })!.value, 0);
    const p = path.join(t.dir, 'prune.prom');
    assert.equal((await runBkp(['prune', '--repo', repo, '--keep-last', '1', '--metrics-file', p])).code, 0);
    m = await samples(p);
    assert.equal(sampleOf(m, 'bkp_last_run_backups_removed', { bkp_command: 'prune' })!.value, 1);
    assert.ok(sampleOf(m, 'bkp_last_success_timestamp_seconds', { bkp_command: 'prune' })!.value > 0);
    const g = path.join(t.dir, 'gc.prom');
    assert.equal((await runBkp(['gc', '--repo', repo, '--metrics-file', g])).code, 0);
    m = await samples(g);
    assert.equal(sampleOf(m, 'bkp_last_run_packs_removed', { bkp_command: 'gc' })!.value, 0);
    const bad = await runBkp(['gc', '--repo', repo, '--metrics-file', path.join(t.dir, 'missing', 'gc.prom')]);
    assert.equal(bad.code, ExitCode.DEVICE_MISSING);
  });
});
