/**
 * An S3 response body that stalls longer than the socket timeout is read again (issue 18 item 15;
 * docs/cli.md: an idle connection is dropped and the request retried): restore and verify through
 * the fault proxy in front of the real RGW, with every second pack read stalled half-way, succeed
 * byte-equal; a body that stalls on every attempt fails with exit 24 after the retry budget.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, sha256Of } from '../support/data.js';
import { newBucket, s3Endpoint, s3Env } from '../support/s3.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { ExitCode } from '../../src/errors.js';

describe('S3 bodies that stall past the socket timeout', () => {
  const t = tempDir('bkp-s3-stall-');
  const img = path.join(t.dir, 'disk.img');
  let endpoint: string;
  let proxy: FaultProxy;
  let repo: string;
  let packGets = 0;
  let stallEvery = 2;
  before(async () => {
    endpoint = await s3Endpoint();
    proxy = await startFaultProxy({
      upstream: endpoint,
      seed: 1,
      rate: 0,
      stallMs: 2500,
      pick: (method, url) => (method === 'GET' && /\/packs\//.test(url) && ++packGets % stallEvery === 0 ? 'stall' : undefined),
    });
    await makeImage(img, 8 * 1024 * 1024, 's3-stall');
    repo = `s3://${await newBucket(endpoint, 'stall')}/r`;
    const env = s3Env(endpoint);
    assert.equal((await runBkp(['init', '--repo', repo, '--chunk-size', '256K', '--pack-size', '1M', '--s3-endpoint', endpoint], { env })).code, 0);
    const b = await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot', '--quiet', '--s3-endpoint', endpoint], { env });
    assert.equal(b.code, 0, b.stderr);
  });
  after(async () => {
    await proxy.close();
    t.cleanup();
  });
  const viaProxy = (args: string[]) =>
    runBkp([...args, '--repo', repo, '--s3-endpoint', proxy.endpoint], { env: { ...s3Env(endpoint), BKP_S3_SOCKET_TIMEOUT_MS: '1000' }, timeoutMs: 120_000 });

  test('restore and verify --read-data succeed, reading stalled bodies again', async () => {
    const out = path.join(t.dir, 'restored.img');
    const r = await viaProxy(['restore', '--to', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256Of(out), await sha256Of(img));
    const v = await viaProxy(['verify', '--read-data']);
    assert.equal(v.code, 0, v.stderr);
    assert.ok(proxy.counts.stall >= 2, `stalls injected: ${proxy.counts.stall}`);
  });

  test('a body that stalls on every attempt: exit 24 once the retries are spent', async () => {
    stallEvery = 1;
    const before = proxy.counts.stall;
    const r = await viaProxy(['restore', '--to', path.join(t.dir, 'never.img')]);
    assert.equal(r.code, ExitCode.STORAGE_UNREACHABLE, r.stderr);
    assert.match(r.stderr, /^bkp: cannot reach S3 endpoint .*\(TimeoutError\)$/m);
    assert.ok(proxy.counts.stall - before <= 3 * 4, `bounded: ${proxy.counts.stall - before} stalled reads`);
  });
});
