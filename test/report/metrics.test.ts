/** The Prometheus metrics file: valid text format, last success kept across failures, atomic. */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { renderMetrics, lastSuccessFrom, writeMetricsFile, checkMetricsFile, type RunMetrics } from '../../src/report/metrics.js';
import { parsePrometheusText, sampleOf } from '../support/prometheus.js';
import { tempDir } from '../support/env.js';
import { DeviceMissingError, NotADeviceError } from '../../src/errors.js';

const ok: RunMetrics = {
  job: 'db',
  command: 'run',
  startedAt: new Date('2026-03-10T02:00:00Z'),
  finishedAt: new Date('2026-03-10T02:03:20.5Z'),
  exitCode: 0,
  devices: [
    { device: '/dev/sdb', ok: true, kind: 'incr', mode: 'digest', fallbackReason: 'the tracker\'s generation changed ("reboot")\nor reload', backupId: 'B1', bytesRead: 100, bytesStored: 40, chunksNew: 2, chunksReused: 5, chunksZero: 1 },
    { device: '/dev/sdc', ok: true, kind: 'incr', mode: 'cbt', fallbackReason: null, backupId: 'B1', bytesRead: 7, bytesStored: 3, chunksNew: 1, chunksReused: 0, chunksZero: 0 },
  ],
  counts: { backupsRemoved: 2, packsRemoved: 3, bytesRemoved: 4096 },
};

describe('metrics file', () => {
  const t = tempDir('bkp-metrics-');
  after(() => t.cleanup());

  test('a successful run: every metric, parseable as Prometheus text', () => {
    const { samples, types } = parsePrometheusText(renderMetrics(ok));
    for (const n of types.values()) assert.equal(n, 'gauge');
    const v = (name: string, labels: Record<string, string> = {}) => sampleOf(samples, name, { bkp_job: 'db', ...labels })?.value;
    assert.equal(v('bkp_last_success_timestamp_seconds'), Math.round(ok.finishedAt.getTime() / 1000));
    assert.equal(v('bkp_last_run_exit_code'), 0);
    assert.equal(v('bkp_last_run_duration_seconds'), 200.5);
    assert.equal(v('bkp_last_run_bytes_read', { device: '/dev/sdb' }), 100);
    assert.equal(v('bkp_last_run_bytes_stored', { device: '/dev/sdc' }), 3);
    assert.equal(v('bkp_last_run_chunks_new', { device: '/dev/sdb' }), 2);
    assert.equal(v('bkp_last_run_chunks_reused', { device: '/dev/sdb' }), 5);
    assert.equal(v('bkp_last_run_backups_removed'), 2);
    assert.equal(v('bkp_last_run_packs_removed'), 3);
    assert.equal(v('bkp_last_run_bytes_removed'), 4096);
    const info = sampleOf(samples, 'bkp_last_run_info', { device: '/dev/sdb' })!;
    assert.deepEqual(info.labels, { bkp_job: 'db', device: '/dev/sdb', kind: 'incr', mode: 'digest', fallback_reason: ok.devices[0]!.fallbackReason! }, 'quotes and newlines survive escaping; no backup id (a new series every run)');
    assert.ok(!renderMetrics(ok).includes('B1'), 'the backup id is in no label');
    assert.equal(sampleOf(samples, 'bkp_last_run_info', { device: '/dev/sdc' })!.labels.fallback_reason, '');
  });

  test('a failed run keeps the previous last success and says which device failed', () => {
    const failed: RunMetrics = { ...ok, exitCode: 3, devices: [ok.devices[0]!, { device: '/dev/sdc', ok: false }], counts: undefined };
    const { samples } = parsePrometheusText(renderMetrics(failed, 1_700_000_000));
    assert.equal(sampleOf(samples, 'bkp_last_success_timestamp_seconds')!.value, 1_700_000_000);
    assert.equal(sampleOf(samples, 'bkp_last_run_exit_code')!.value, 3);
    assert.equal(sampleOf(samples, 'bkp_last_run_device_ok', { device: '/dev/sdc' })!.value, 0);
    assert.equal(sampleOf(samples, 'bkp_last_run_bytes_read', { device: '/dev/sdc' }), undefined);
    assert.equal(sampleOf(samples, 'bkp_last_run_backups_removed'), undefined);
    const first = parsePrometheusText(renderMetrics({ ...failed, job: undefined }));
    assert.equal(sampleOf(first.samples, 'bkp_last_success_timestamp_seconds')?.value, 0, 'never succeeded: 0, so the age alert fires');
    assert.equal(lastSuccessFrom(renderMetrics({ ...failed, job: undefined })), undefined, 'a 0 is not carried as a success');
    assert.deepEqual(sampleOf(first.samples, 'bkp_last_run_exit_code')!.labels, {}, 'no job label without a job');
  });

  test('lastSuccessFrom reads what renderMetrics wrote', () => {
    assert.equal(lastSuccessFrom(renderMetrics(ok)), Math.round(ok.finishedAt.getTime() / 1000));
    assert.equal(lastSuccessFrom(''), undefined);
    assert.equal(lastSuccessFrom('garbage\nbkp_last_success_timestamp_seconds NaN\n'), undefined);
  });

  test('writeMetricsFile: replaces atomically, keeps last success over failures, leaves no temporary file', async () => {
    const file = path.join(t.dir, 'bkp.prom');
    await writeMetricsFile(file, ok);
    const success = Math.round(ok.finishedAt.getTime() / 1000);
    for (const code of [11, 1]) {
      await writeMetricsFile(file, { ...ok, exitCode: code, finishedAt: new Date(), devices: [] });
      const { samples } = parsePrometheusText(await fs.readFile(file, 'utf8'));
      assert.equal(sampleOf(samples, 'bkp_last_success_timestamp_seconds')!.value, success);
      assert.equal(sampleOf(samples, 'bkp_last_run_exit_code')!.value, code);
    }
    assert.deepEqual(await fs.readdir(t.dir), ['bkp.prom']);
    assert.equal((await fs.stat(file)).mode & 0o777, 0o644, 'readable by node_exporter');
    await assert.rejects(writeMetricsFile(path.join(t.dir, 'no', 'bkp.prom'), ok), DeviceMissingError);
  });

  test('exit 4 (stored, a task after it failed) counts as a success; 1 does not', () => {
    const done = parsePrometheusText(renderMetrics({ ...ok, exitCode: 4 }, 1_700_000_000)).samples;
    assert.equal(sampleOf(done, 'bkp_last_success_timestamp_seconds')!.value, Math.round(ok.finishedAt.getTime() / 1000));
  });

  test('verify, prune and gc: their series carry bkp_command, so their files never collide with a backup\'s', () => {
    const v = parsePrometheusText(renderMetrics({ command: 'verify', startedAt: ok.startedAt, finishedAt: ok.finishedAt, exitCode: 12, devices: [], counts: { backupsChecked: 5, backupsDamaged: 1 } })).samples;
    assert.deepEqual(sampleOf(v, 'bkp_last_run_exit_code')!.labels, { bkp_command: 'verify' });
    assert.equal(sampleOf(v, 'bkp_last_run_backups_checked', { bkp_command: 'verify' })!.value, 5);
    assert.equal(sampleOf(v, 'bkp_last_run_backups_damaged', { bkp_command: 'verify' })!.value, 1);
    assert.equal(sampleOf(v, 'bkp_last_success_timestamp_seconds')!.value, 0);
    const b = parsePrometheusText(renderMetrics({ ...ok, job: undefined, command: 'full' })).samples;
    assert.deepEqual(sampleOf(b, 'bkp_last_run_exit_code')!.labels, {}, 'backups keep their labels');
  });

  test('checkMetricsFile: refuses, before any work, a missing directory, a file as directory, a directory as file', async () => {
    await checkMetricsFile(path.join(t.dir, 'fine.prom'));
    await assert.rejects(checkMetricsFile(path.join(t.dir, 'no', 'bkp.prom')), (e: Error) => e instanceof DeviceMissingError && /directory of metrics file .* does not exist/.test(e.message));
    await fs.writeFile(path.join(t.dir, 'plain'), '');
    await assert.rejects(checkMetricsFile(path.join(t.dir, 'plain', 'bkp.prom')), NotADeviceError);
    await fs.mkdir(path.join(t.dir, 'adir.prom'));
    await assert.rejects(checkMetricsFile(path.join(t.dir, 'adir.prom')), NotADeviceError);
    await fs.rm(path.join(t.dir, 'adir.prom'), { recursive: true });
    await fs.rm(path.join(t.dir, 'plain'));
  });
});
