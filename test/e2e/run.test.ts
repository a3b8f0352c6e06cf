/**
 * `bkp run JOB` end to end: a configuration file, real loop devices, the blksnap fake, the real
 * bkp binary — full then CBT incrementals by the schedule, prune by the retention, the metrics
 * file, flags over the configuration, a failing run keeping the last success.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { parsePrometheusText, sampleOf } from '../support/prometheus.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

describe('bkp run (configured job, blksnap fake, loop devices)', () => {
  let h: BlksnapHarness;
  let devs: string[];
  let repo: string;
  let config: string;
  let metrics: string;
  let env: NodeJS.ProcessEnv;
  const run = (args: string[] = []) => runBkp(['run', 'sys', '--json', ...args], { env });
  const runOk = async (args: string[] = []) => {
    const r = await run(args);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const readMetrics = async () => parsePrometheusText(await fs.readFile(metrics, 'utf8')).samples;

  before(async () => {
    h = await blksnapHarness('fake', { portionSectors: 8192 });
    devs = [await h.loop(SIZE, pattern(11)), await h.loop(SIZE, pattern(12))];
    repo = path.join(h.dir, 'repo');
    metrics = path.join(h.dir, 'bkp-sys.prom');
    const diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    config = path.join(h.dir, 'config.json');
    await fs.writeFile(
      config,
      JSON.stringify(
        {
          jobs: {
            sys: { repo, devices: devs, diffStorage: diff, diffStorageLimit: '64M', schedule: { fullEvery: '7d' }, retention: { keepLast: 2 }, metricsFile: metrics },
            broken: { repo, devices: [path.join(h.dir, 'gone')], snapshot: false },
          },
        },
        null,
        2,
      ),
    );
    env = { BKP_BLKSNAP_FAKE: h.fakeDir, BKP_CONFIG: config };
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '256K'])).code, 0);
  });
  after(() => h.cleanup());

  test('first run: a full of both devices in one snapshot; metrics written', async () => {
    const r = await runOk();
    assert.equal(r.decision.kind, 'full');
    assert.match(r.decision.reason, /no backup of/);
    assert.equal(r.backup.snapshot, true);
    assert.deepEqual(r.backup.devices.map((d: { ok: boolean }) => d.ok), [true, true]);
    const m = await readMetrics();
    assert.equal(sampleOf(m, 'bkp_last_run_exit_code', { bkp_job: 'sys' })!.value, 0);
    assert.ok(sampleOf(m, 'bkp_last_success_timestamp_seconds', { bkp_job: 'sys' })!.value > Date.now() / 1000 - 60);
    assert.equal(sampleOf(m, 'bkp_last_run_bytes_read', { device: devs[0]! })!.value, SIZE);
    assert.equal(sampleOf(m, 'bkp_last_run_info', { device: devs[1]! })!.labels.kind, 'full');
  });

  test('next runs: incrementals from the CBT map; retention prunes to the last 2 per device', async () => {
    await h.write(devs[0]!, 3 * MiB, patternBuffer(5, 3 * MiB, 4096));
    const r = await runOk();
    assert.equal(r.decision.kind, 'incr');
    assert.match(r.decision.reason, /younger than 7d/);
    assert.equal(r.backup.devices[0].method.mode, 'cbt');
    assert.equal(r.backup.devices[0].stats.bytesRead, 64 * 1024, 'one changed 64 KiB piece read');
    assert.equal(r.backup.devices[1].stats.bytesRead, 0);
    assert.equal(r.prune.ok, true);
    assert.equal(r.prune.remove.length, 0);
    const r3 = await runOk();
    assert.equal(r3.decision.kind, 'incr');
    assert.equal(r3.prune.remove.length, 2, 'the full of each device is pruned');
    const list = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout);
    assert.equal(list.backups.length, 4);
    assert.ok(list.backups.every((b: { kind: string }) => b.kind === 'incr'));
    assert.equal(sampleOf(await readMetrics(), 'bkp_last_run_backups_removed')!.value, 2);
    for (const d of devs) {
      const out = path.join(h.dir, `restored-${path.basename(d)}.img`);
      const res = await runBkp(['restore', '--repo', repo, '--device', d, '--to', out]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(await sha256Of(out), await sha256Of(d), `restore of ${d}`);
      await fs.rm(out);
    }
  });

  test('no full left after pruning: still incremental, the schedule counts from the full the backups remember', async () => {
    const r = await runOk(['--no-prune']);
    assert.equal(r.decision.kind, 'incr', r.decision.reason);
    assert.match(r.decision.reason, /younger than 7d/);
    assert.equal(r.prune, null, '--no-prune');
  });

  test('keepDaily with several runs a day: the full the prune removes does not force a new full (issue 18 item 5)', async () => {
    const dev = await h.loop(SIZE, pattern(13));
    const cfg = path.join(h.dir, 'daily.json');
    const diff = path.join(h.dir, 'diff');
    const jobs = {
      daily: { repo, devices: [dev], diffStorage: diff, diffStorageLimit: '64M', schedule: { fullEvery: '7d' }, retention: { keepDaily: 7 } },
      nofull: { repo, devices: [dev], diffStorage: diff, diffStorageLimit: '64M', retention: { keepDaily: 7 } },
    };
    await fs.writeFile(cfg, JSON.stringify({ jobs }));
    const kinds: string[] = [];
    for (const job of ['daily', 'daily', 'daily', 'nofull', 'nofull']) {
      await h.write(dev, kinds.length * MiB, patternBuffer(20 + kinds.length, kinds.length * MiB, 4096));
      const r = await runBkp(['run', job, '--json'], { env: { ...env, BKP_CONFIG: cfg } });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      kinds.push(out.decision.kind);
      if (kinds.length === 2) assert.equal(out.prune.remove.length, 1, 'the day\'s full is pruned (keepDaily keeps the newest of the day)');
    }
    assert.deepEqual(kinds, ['full', 'incr', 'incr', 'incr', 'incr']);
    const list = JSON.parse((await runBkp(['list', '--repo', repo, '--device', dev, '--json'])).stdout);
    assert.equal(list.backups.length, 1);
    const out = path.join(h.dir, 'restored-daily.img');
    const res = await runBkp(['restore', '--repo', repo, '--device', dev, '--to', out]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await sha256Of(out), await sha256Of(dev));
    await fs.rm(out);
  });

  test('after a module reload the incremental is a digest fallback, and the metrics name the reason', async () => {
    await h.fake!.reload();
    const r = await runOk();
    assert.equal(r.decision.kind, 'incr');
    assert.equal(r.backup.devices[0].method.mode, 'digest');
    const info = sampleOf(await readMetrics(), 'bkp_last_run_info', { device: devs[0]! })!;
    assert.equal(info.labels.mode, 'digest');
    assert.match(info.labels.fallback_reason!, /generation changed/);
  });

  test('flags override the configuration: --full, --no-snapshot, --metrics-file', async () => {
    const other = path.join(h.dir, 'other.prom');
    const r = await runOk(['--full', '--no-snapshot', '--metrics-file', other]);
    assert.equal(r.decision.kind, 'full');
    assert.equal(r.decision.reason, '--full given');
    assert.equal(r.backup.snapshot, false);
    assert.equal(sampleOf(parsePrometheusText(await fs.readFile(other, 'utf8')).samples, 'bkp_last_run_exit_code')!.value, 0);
    const conflict = await runBkp(['run', 'sys', '--full', '--incr'], { env });
    assert.equal(conflict.code, ExitCode.USAGE);
  });

  test('a failing run: its exit code in the metrics, the last success kept', async () => {
    const before = sampleOf(await readMetrics(), 'bkp_last_success_timestamp_seconds')!.value;
    const r = await runBkp(['run', 'broken', '--metrics-file', metrics], { env });
    assert.equal(r.code, ExitCode.DEVICE_MISSING, r.stderr);
    assert.match(r.stderr, /^bkp: device .*gone does not exist$/m);
    const m = await readMetrics();
    assert.equal(sampleOf(m, 'bkp_last_run_exit_code', { bkp_job: 'broken' })!.value, ExitCode.DEVICE_MISSING);
    assert.equal(sampleOf(m, 'bkp_last_success_timestamp_seconds', { bkp_job: 'broken' })!.value, before);
  });

  test('configuration errors: exit 26 naming the key and line; unknown job names the jobs', async () => {
    const bad = path.join(h.dir, 'bad.json');
    await fs.writeFile(bad, '{\n  "jobs": {\n    "x": {\n      "devices": ["/dev/sdb"],\n      "retention": { "keepDaily": "7" }\n    }\n  }\n}\n');
    const r = await runBkp(['run', 'x', '--config', bad]);
    assert.equal(r.code, ExitCode.CONFIG_INVALID);
    assert.equal(r.stderr, `bkp: config ${bad} line 5: jobs.x.retention.keepDaily must be a whole number >= 0\n`);
    const check = await runBkp(['config', 'check', '--config', bad]);
    assert.equal(check.code, ExitCode.CONFIG_INVALID);
    const unknown = await runBkp(['run', 'nope'], { env });
    assert.equal(unknown.code, ExitCode.CONFIG_INVALID);
    assert.match(unknown.stderr, /has no job "nope" \(jobs: sys, broken\)/);
    const missing = await runBkp(['run', 'sys', '--config', path.join(h.dir, 'none.json')]);
    assert.equal(missing.code, ExitCode.CONFIG_INVALID);
    assert.match(missing.stderr, /none\.json \(from --config\) does not exist/);
    const ok = await runBkp(['config', 'check', '--json'], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout).jobs.map((j: { name: string }) => j.name), ['sys', 'broken']);
  });
});
