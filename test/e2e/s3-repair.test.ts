/**
 * Damage records, the backup that stores damaged chunks anew, and `bkp repair` on a real S3
 * server (Ceph's RADOS Gateway): the same objects as in a directory (damage/, quarantine/).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage, sha256Of } from '../support/data.js';
import { adminClient, newBucket, s3Endpoint, s3Env } from '../support/s3.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const t = tempDir('bkp-s3-repair-');
let endpoint: string;
before(async () => {
  endpoint = await s3Endpoint();
});
after(() => t.cleanup());

async function keys(bucket: string, prefix: string): Promise<string[]> {
  const c = adminClient(endpoint);
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) out.push(o.Key!);
    token = r.NextContinuationToken;
  } while (token);
  c.destroy();
  return out.sort();
}

test('S3: verify records the damage, a new full stores the chunks anew, repair quarantines the pack and heals the old backup', { timeout: 180_000 }, async () => {
  const bucket = await newBucket(endpoint, 'repair');
  const repo = `s3://${bucket}/r`;
  const env = s3Env(endpoint);
  const img = path.join(t.dir, 'disk.img');
  await makeImage(img, 4 * MiB, 's3-repair');
  const want = await sha256Of(img);
  const bkp = (args: string[]) => runBkp([...args, '--repo', repo], { env });
  assert.equal((await bkp(['init', '--chunk-size', '64K', '--pack-size', '1M'])).code, 0);
  const f1 = await bkp(['full', '--device', img, '--no-snapshot', '--json']);
  assert.equal(f1.code, 0, f1.stderr);
  const first = JSON.parse(f1.stdout).backupId as string;

  const pack = (await keys(bucket, 'r/packs/'))[0]!;
  const packId = path.basename(pack, '.pack');
  const c = adminClient(endpoint);
  const body = Buffer.from(await (await c.send(new GetObjectCommand({ Bucket: bucket, Key: pack }))).Body!.transformToByteArray());
  body[100]! ^= 0x40; // inside the first envelope's payload
  await c.send(new PutObjectCommand({ Bucket: bucket, Key: pack, Body: body }));
  c.destroy();

  const v = await bkp(['verify', '--read-data', '--json']);
  assert.equal(v.code, ExitCode.CORRUPT, v.stderr);
  assert.deepEqual(JSON.parse(v.stdout).damagedPacks, [packId]);
  assert.ok((await keys(bucket, `r/damage/${packId}/`)).length >= 1, 'the damage is recorded in the bucket');

  const f2 = await bkp(['full', '--device', img, '--no-snapshot', '--json']);
  assert.equal(f2.code, 0, f2.stderr);
  assert.ok(JSON.parse(f2.stdout).devices[0].stats.chunksNew >= 1, f2.stdout);

  const r = await bkp(['repair', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).healed, true);
  assert.deepEqual(await keys(bucket, pack), [], 'the damaged pack left packs/');
  assert.deepEqual(await keys(bucket, `r/quarantine/${packId}.pack`), [`r/quarantine/${packId}.pack`]);
  assert.deepEqual(await keys(bucket, 'r/damage/'), []);

  const out = path.join(t.dir, 'out.img');
  const rs = await bkp(['restore', '--backup', first, '--to', out]);
  assert.equal(rs.code, 0, rs.stderr);
  assert.equal(await sha256Of(out), want);
  assert.equal((await bkp(['verify', '--read-data'])).code, 0);
});
