import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand, CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import { S3Target } from '../../src/storage/s3/s3-target.js';
import { makeS3Client, parseS3Url, resolveEndpoint } from '../../src/storage/s3/s3-config.js';
import { openS3Target } from '../../src/storage/s3/open-s3.js';
import { ObjectMissingError } from '../../src/storage/target.js';
import { BkpError, ExitCode } from '../../src/errors.js';
import { targetConformance } from './conformance.js';
import { adminClient, newBucket, s3Endpoint, s3Env, freePort } from '../support/s3.js';

const MiB = 1024 * 1024;

function withEnv<T>(env: NodeJS.ProcessEnv, fn: () => T): T {
  const old: NodeJS.ProcessEnv = {};
  for (const k of Object.keys(env)) {
    old[k] = process.env[k];
    process.env[k] = env[k];
  }
  try {
    return fn();
  } finally {
    for (const k of Object.keys(env)) {
      if (old[k] === undefined) delete process.env[k];
      else process.env[k] = old[k];
    }
  }
}

/** A target on the test server, with small multipart sizes so that multi-MiB tests use multipart. */
function target(endpoint: string, url: string, opts: { storageClass?: string; multipart?: boolean } = {}): S3Target {
  return withEnv(s3Env(endpoint), () => {
    const loc = parseS3Url(url);
    const ep = resolveEndpoint({});
    return new S3Target(makeS3Client({}, ep), loc, {
      endpointLabel: ep.label,
      packStorageClass: opts.storageClass,
      ...(opts.multipart === false ? {} : { multipartThreshold: 5 * MiB, partSize: 5 * MiB }),
    });
  });
}

let endpoint: string;
let shared: string;
before(async () => {
  endpoint = await s3Endpoint();
  // credentials are resolved by the SDK's default chain when the first request goes out
  Object.assign(process.env, s3Env(endpoint));
  shared = await newBucket(endpoint, 'conf');
  // objects outside every test's prefix, which no test may see or touch
  const c = adminClient(endpoint);
  await c.send(new PutObjectCommand({ Bucket: shared, Key: 'outside', Body: 'not yours' }));
  await c.send(new PutObjectCommand({ Bucket: shared, Key: 'repo-0outside/x', Body: 'not yours' }));
  c.destroy();
});

let n = 0;
targetConformance('S3Target (RADOS Gateway, under a prefix)', async () => {
  const t = target(endpoint, `s3://${shared}/repo-${++n}/sub`);
  return { target: t, cleanup: async () => t.destroy() };
});

describe('S3Target specifics', () => {
  after(async () => {
    // the objects outside the prefixes are untouched by the whole suite
    const c = adminClient(endpoint);
    const r = await c.send(new GetObjectCommand({ Bucket: shared, Key: 'outside' }));
    assert.equal(await r.Body!.transformToString(), 'not yours');
    c.destroy();
  });

  test('a repository at the root of a bucket keeps keys as they are', async () => {
    const bucket = await newBucket(endpoint, 'root');
    const t = target(endpoint, `s3://${bucket}`);
    assert.equal(t.location, `s3://${bucket}`);
    await t.put('config', Buffer.from('c'));
    const c = adminClient(endpoint);
    const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key: 'config' }));
    assert.equal(await r.Body!.transformToString(), 'c');
    c.destroy();
    t.destroy();
  });

  test('pack objects get the storage class, other objects stay in the default class', async () => {
    const bucket = await newBucket(endpoint, 'class');
    const t = target(endpoint, `s3://${bucket}/r`, { storageClass: 'STANDARD_IA' });
    await t.put('packs/ab/abcdef.pack', randomBytes(1000));
    await t.put('packs/ab/abcdef0.pack', randomBytes(6 * MiB)); // multipart
    await t.put('backups/x/dev.idx', randomBytes(100));
    const c = adminClient(endpoint);
    const cls = async (k: string) => (await c.send(new HeadObjectCommand({ Bucket: bucket, Key: `r/${k}` }))).StorageClass ?? 'STANDARD';
    assert.equal(await cls('packs/ab/abcdef.pack'), 'STANDARD_IA');
    assert.equal(await cls('packs/ab/abcdef0.pack'), 'STANDARD_IA');
    assert.equal(await cls('backups/x/dev.idx'), 'STANDARD');
    const listed = new Map<string, string | undefined>();
    for await (const o of t.list('')) listed.set(o.key, o.storageClass);
    assert.equal(listed.get('packs/ab/abcdef.pack'), 'STANDARD_IA');
    c.destroy();
    t.destroy();
  });

  test('a large object goes up in parts, in parallel, and no upload is left behind', async () => {
    const bucket = await newBucket(endpoint, 'mp');
    const t = target(endpoint, `s3://${bucket}/r`);
    const body = [randomBytes(7 * MiB), randomBytes(9 * MiB + 5)];
    await t.put('packs/00/big.pack', body);
    assert.equal(t.requests.get('UploadPart'), 4, '16 MiB in 5 MiB parts');
    assert.equal(t.requests.get('CreateMultipartUpload'), 1);
    assert.ok((await t.get('packs/00/big.pack')).equals(Buffer.concat(body)));
    const c = adminClient(endpoint);
    const u = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.equal((u.Uploads ?? []).length, 0);
    c.destroy();
    t.destroy();
  });

  test('removeLeftovers aborts an unfinished multipart upload under its prefix only', async () => {
    const bucket = await newBucket(endpoint, 'left');
    const c = adminClient(endpoint);
    await c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `r/packs/00/00${'d'.repeat(30)}.pack` }));
    await c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `other/packs/00/00${'e'.repeat(30)}.pack` }));
    // an upload of another program under the same prefix is not bkp's to abort
    await c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'r/video.mp4' }));
    const t = target(endpoint, `s3://${bucket}/r`);
    assert.equal(await t.removeLeftovers(true), 1);
    assert.equal(await t.removeLeftovers(false), 1);
    assert.equal(await t.removeLeftovers(true), 0);
    const u = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual((u.Uploads ?? []).map((x) => x.Key).sort(), [`other/packs/00/00${'e'.repeat(30)}.pack`, 'r/video.mp4']);
    c.destroy();
    t.destroy();
  });

  test('listing pages through more than 1000 objects', { timeout: 120_000 }, async () => {
    const bucket = await newBucket(endpoint, 'page');
    const t = target(endpoint, `s3://${bucket}/r`);
    const keys = Array.from({ length: 1203 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 64) await Promise.all(keys.slice(i, i + 64).map((k) => t.put(k, Buffer.from(k))));
    const before = t.requests.get('ListObjectsV2') ?? 0;
    const seen: string[] = [];
    for await (const o of t.list('many/')) seen.push(o.key);
    assert.deepEqual(seen.sort(), keys);
    assert.equal((t.requests.get('ListObjectsV2') ?? 0) - before, 2, 'two pages');
    t.destroy();
  });

  test('every upload carries Content-MD5 and a wrong one is refused by the server', async () => {
    const bucket = await newBucket(endpoint, 'md5');
    const c = adminClient(endpoint);
    await assert.rejects(
      c.send(new PutObjectCommand({ Bucket: bucket, Key: 'x', Body: 'hello', ContentMD5: Buffer.alloc(16).toString('base64') })),
      (e: Error) => /BadDigest|InvalidDigest/.test(e.name),
    );
    c.destroy();
    const t = target(endpoint, `s3://${bucket}/r`);
    const seen: string[] = [];
    (t as unknown as { client: { middlewareStack: { add: Function } } }).client.middlewareStack.add(
      (next: (a: unknown) => Promise<unknown>) => async (args: { request: { method: string; headers: Record<string, string> } }) => {
        if (args.request.method === 'PUT') seen.push(args.request.headers['content-md5'] ?? 'none');
        return next(args);
      },
      { step: 'finalizeRequest', name: 'md5Spy' },
    );
    await t.put('a', Buffer.from('small'));
    await t.put('b', randomBytes(11 * MiB)); // 3 parts
    assert.ok(seen.length === 4 && seen.every((h) => h !== 'none'), `headers: ${seen.join(',')}`);
    t.destroy();
  });

  test('get of a missing object is ObjectMissingError; a missing bucket is exit 28 naming it', async () => {
    const t = target(endpoint, `s3://${shared}/nothing-here`);
    await assert.rejects(t.get('config'), ObjectMissingError);
    const gone = target(endpoint, 's3://bkp-no-such-bucket-xyz/r');
    const named = (e: BkpError) => e.exitCode === ExitCode.BUCKET_MISSING && e.message.includes('bkp-no-such-bucket-xyz') && e.message.includes(endpoint);
    await assert.rejects(gone.get('config'), named);
    // HEAD has no error body: stat must still not report a missing bucket as a missing object
    await assert.rejects(gone.stat('config'), named);
    await assert.rejects(async () => {
      for await (const _ of gone.list('')) assert.fail('listed a missing bucket');
    }, named);
    gone.destroy();
  });

  test('an endpoint where nothing listens is exit 24 naming it', async () => {
    const port = await freePort();
    const dead = withEnv({ ...s3Env(`http://127.0.0.1:${port}`), BKP_S3_MAX_ATTEMPTS: '2' }, () => openS3Target(`s3://${shared}/r`));
    await assert.rejects(dead.stat('config'), (e: BkpError) => e.exitCode === ExitCode.STORAGE_UNREACHABLE && e.message.includes(`127.0.0.1:${port}`));
    dead.destroy();
  });
});
