/**
 * A backup whose pack upload fails for good stops its other uploads at once (issue 18 item 9:
 * ~582 MiB were sent for a failed 151 MiB backup while the other uploads kept retrying): through
 * the fault proxy in front of the real RGW, the first pack's upload is held back, the second is
 * refused (403); the run must fail at once with the 403's exit code, and the held-back upload must
 * be abandoned — nothing reaches the bucket, no unfinished multipart upload is left.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage } from '../support/data.js';
import { adminClient, newBucket, s3Endpoint, s3Env } from '../support/s3.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { ExitCode } from '../../src/errors.js';

const HOLD_MS = 15_000;

describe('S3: a pack upload that fails for good', () => {
  const t = tempDir('bkp-s3-abandon-');
  const img = path.join(t.dir, 'disk.img');
  let endpoint: string;
  let proxy: FaultProxy;
  let bucket: string;
  let packPuts = 0;
  let current = 0;
  before(async () => {
    endpoint = await s3Endpoint();
    proxy = await startFaultProxy({
      upstream: endpoint,
      seed: 1,
      rate: 0,
      delayMs: HOLD_MS,
      pick: (method, url) => {
        current = method === 'PUT' && /\/packs\//.test(url) ? ++packPuts : 0;
        return current === 1 ? 'delay' : undefined;
      },
      answer: () => (current === 2 ? { status: 403, code: 'AccessDenied' } : undefined),
    });
    await makeImage(img, 8 * 1024 * 1024, 's3-abandon');
    bucket = await newBucket(endpoint, 'abandon');
    const r = await runBkp(['init', '--repo', `s3://${bucket}/r`, '--chunk-size', '256K', '--pack-size', '1M', '--s3-endpoint', endpoint], { env: s3Env(endpoint) });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await proxy.close();
    t.cleanup();
  });

  test('the other uploads are abandoned at once; nothing is left in the bucket', async () => {
    const started = Date.now();
    const r = await runBkp(['full', '--repo', `s3://${bucket}/r`, '--device', img, '--no-snapshot', '--quiet', '--s3-endpoint', proxy.endpoint], {
      env: s3Env(endpoint),
    });
    const ms = Date.now() - started;
    assert.equal(r.code, ExitCode.STORAGE_DENIED, r.stderr);
    assert.ok(packPuts >= 2, `pack uploads seen: ${packPuts}`);
    assert.ok(ms < HOLD_MS, `the run ended after ${ms} ms, not after the held-back upload (${HOLD_MS} ms)`);
    await new Promise((res) => setTimeout(res, HOLD_MS + 500)); // a held-back upload would land now
    const c = adminClient(endpoint);
    try {
      const objects = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'r/packs/' }));
      assert.deepEqual((objects.Contents ?? []).map((o) => o.Key), [], 'no pack of the failed run was stored');
      const uploads = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      assert.deepEqual(uploads.Uploads ?? [], []);
    } finally {
      c.destroy();
    }
  });
});
