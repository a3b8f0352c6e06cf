/**
 * bkp against a real S3 server (Ceph's RADOS Gateway on 127.0.0.1): the real CLI, real loop
 * devices and the blksnap fake. Full → incr → restore byte-equal, verify catching damage, the
 * request budget, storage classes, and what users get wrong.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { runBkp } from '../support/env.js';
import { sha256Of } from '../support/data.js';
import { blksnapHarness, pattern, patternBuffer, type BlksnapHarness } from '../support/blksnap-fake.js';
import { adminClient, freePort, newBucket, s3Endpoint, s3Env, S3_OTHER_KEY, S3_OTHER_SECRET, S3_SECRET } from '../support/s3.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;

let endpoint: string;
let h: BlksnapHarness;
let diff: string;
before(async () => {
  endpoint = await s3Endpoint();
  h = await blksnapHarness('fake', { portionSectors: 8192 });
  diff = path.join(h.dir, 'diff');
  await fs.mkdir(diff);
});
after(async () => {
  await h.cleanup();
});

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...s3Env(endpoint), BKP_BLKSNAP_FAKE: h.fakeDir, ...extra };
}

function bkp(args: string[], extra: NodeJS.ProcessEnv = {}) {
  const backup = ['full', 'incr'].includes(args[0]!) ? ['--diff-storage', diff, '--diff-storage-limit', '256M'] : [];
  return runBkp([...args, ...backup], { env: env(extra) });
}

async function ok(args: string[], extra: NodeJS.ProcessEnv = {}) {
  const r = await bkp(args, extra);
  assert.equal(r.code, 0, `bkp ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** Runs bkp with a request log; returns the requests as "Operation key" lines. */
async function counted(args: string[]): Promise<{ requests: string[]; stdout: string }> {
  const log = path.join(h.dir, `requests-${Date.now()}-${randomBytes(3).toString('hex')}.log`);
  const r = await ok(args, { BKP_S3_REQUEST_LOG: log });
  const requests = (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return { requests, stdout: r.stdout };
}

async function restoredHash(repo: string, id: string): Promise<string> {
  const out = path.join(h.dir, `restore-${randomBytes(4).toString('hex')}.img`);
  await ok(['restore', '--repo', repo, '--backup', id, '--to', out]);
  const hash = await sha256Of(out);
  await fs.rm(out);
  return hash;
}

async function objectKeys(bucket: string, prefix: string): Promise<string[]> {
  const c = adminClient(endpoint);
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    out.push(...(r.Contents ?? []).map((o) => o.Key!));
    token = r.NextContinuationToken;
  } while (token);
  c.destroy();
  return out;
}

describe('bkp with an S3 repository', () => {
  test('full → incr → restore are byte-equal; verify passes; packs in their storage class', { timeout: 180_000 }, async () => {
    const bucket = await newBucket(endpoint, 'e2e');
    const repo = `s3://${bucket}/servers/db1`;
    const dev = await h.loop(48 * MiB, pattern(7));
    await ok(['init', '--repo', repo, '--chunk-size', '256K']);
    const full = JSON.parse((await ok(['full', '--repo', repo, '--device', dev, '--json', '--s3-storage-class', 'STANDARD_IA'])).stdout);
    const fullHash = await sha256Of(dev);
    for (let i = 0; i < 40; i++) await h.write(dev, ((i * 7919) % 12000) * 4096, patternBuffer(i + 100, i, 4096));
    const incr = JSON.parse((await ok(['incr', '--repo', repo, '--device', dev, '--json', '--s3-storage-class', 'STANDARD_IA'])).stdout);
    assert.equal(incr.devices[0].method.mode, 'cbt', 'a CBT incremental');
    const incrHash = await sha256Of(dev);
    assert.notEqual(incrHash, fullHash);
    assert.equal(await restoredHash(repo, full.backupId), fullHash);
    assert.equal(await restoredHash(repo, incr.backupId), incrHash);
    assert.equal(await restoredHash(repo, 'latest'), incrHash);
    await ok(['verify', '--repo', repo, '--read-data']);

    const keys = await objectKeys(bucket, 'servers/db1/');
    const c = adminClient(endpoint);
    const cls = async (k: string) => (await c.send(new HeadObjectCommand({ Bucket: bucket, Key: k }))).StorageClass ?? 'STANDARD';
    const packs = keys.filter((k) => k.includes('/packs/'));
    assert.ok(packs.length > 0);
    for (const k of packs) assert.equal(await cls(k), 'STANDARD_IA', k);
    for (const k of keys.filter((k) => !k.includes('/packs/'))) assert.equal(await cls(k), 'STANDARD', k);
    c.destroy();
  });

  test('request budget: an incr with nothing changed makes at most 11 requests; at most one PUT per 16 MiB stored', { timeout: 180_000 }, async () => {
    const bucket = await newBucket(endpoint, 'budget');
    const repo = `s3://${bucket}/r`;
    // incompressible data, so that what is stored is as large as what is read
    const dev = await h.loop(96 * MiB, () => (Math.random() * 2 ** 32) >>> 0);
    await ok(['init', '--repo', repo]);
    const full = await counted(['full', '--repo', repo, '--device', dev, '--json']);
    const stored = JSON.parse(full.stdout).devices[0].stats.bytesStored as number;
    assert.ok(stored > 90 * MiB, `stored ${stored}`);
    const puts = full.requests.filter((r) => /^(PutObject|UploadPart) /.test(r));
    assert.ok(puts.length <= Math.ceil(stored / (16 * MiB)), `${puts.length} PUTs for ${stored} bytes:\n${puts.join('\n')}`);

    const idle = await counted(['incr', '--repo', repo, '--device', dev, '--json']);
    assert.equal(JSON.parse(idle.stdout).devices[0].method.mode, 'cbt');
    assert.ok(idle.requests.length <= 11, `${idle.requests.length} requests:\n${idle.requests.join('\n')}`);
    // and it is still a complete backup
    assert.equal(await restoredHash(repo, 'latest'), await sha256Of(dev));

    // a repository that has seen many runs: backups do not spend requests on old lock generations
    const c = adminClient(endpoint);
    for (let g = 100; g < 130; g++) {
      const rec = { host: 'old', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', command: 'bkp incr', state: 'released' };
      await c.send(new PutObjectCommand({ Bucket: bucket, Key: `r/locks/${String(g).padStart(12, '0')}`, Body: JSON.stringify(rec) }));
    }
    c.destroy();
    const later = await counted(['incr', '--repo', repo, '--device', dev, '--json']);
    assert.ok(later.requests.length <= 11, `${later.requests.length} requests with 30 old lock generations:\n${later.requests.join('\n')}`);

    // with a second device in the repository, an incr that stores one chunk adds its pack PUT and
    // one GET (the other device's newest index, for dedup) to the budget, nothing per backup
    const dev2 = await h.loop(8 * MiB, pattern(41));
    await ok(['full', '--repo', repo, '--device', dev2]);
    await ok(['incr', '--repo', repo, '--device', dev2]);
    await h.write(dev, 0, randomBytes(4096));
    const one = await counted(['incr', '--repo', repo, '--device', dev, '--json']);
    assert.equal(JSON.parse(one.stdout).devices[0].stats.chunksNew, 1);
    assert.ok(one.requests.length <= 13, `${one.requests.length} requests for one changed chunk:\n${one.requests.join('\n')}`);
    // gc (housekeeping) trims the lock history to the last 16 generations
    await ok(['gc', '--repo', repo]);
    assert.ok((await objectKeys(bucket, 'r/locks/')).length <= 17);
  });

  test('verify names the backup whose pack was deleted or altered', { timeout: 120_000 }, async () => {
    const bucket = await newBucket(endpoint, 'damage');
    const repo = `s3://${bucket}/r`;
    const dev = await h.loop(8 * MiB, pattern(3));
    await ok(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '1M']);
    const b = JSON.parse((await ok(['full', '--repo', repo, '--device', dev, '--json', '--no-snapshot'])).stdout).backupId as string;
    await ok(['verify', '--repo', repo, '--read-data']);
    const packs = (await objectKeys(bucket, 'r/packs/')).sort();
    assert.ok(packs.length >= 2);
    const c = adminClient(endpoint);
    // alter one byte in the middle of one pack
    const obj = await c.send(new GetObjectCommand({ Bucket: bucket, Key: packs[0] }));
    const body = Buffer.from(await obj.Body!.transformToByteArray());
    body[100] = body[100]! ^ 0x40;
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: packs[0], Body: body }));
    let r = await bkp(['verify', '--repo', repo, '--read-data']);
    assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
    assert.match(r.stdout + r.stderr, new RegExp(b));
    // delete another: verify without reading data already sees it
    await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: packs[1] }));
    r = await bkp(['verify', '--repo', repo]);
    assert.equal(r.code, ExitCode.CORRUPT, r.stderr);
    assert.match(r.stdout + r.stderr, new RegExp(b));
    c.destroy();
  });

  test('archived packs: gc does not repack them; a restore that meets one says so (exit 29)', { timeout: 180_000 }, async () => {
    const results: Record<string, number> = {};
    let repoArchived = '';
    let keepId = '';
    for (const cls of ['STANDARD', 'GLACIER']) {
      const bucket = await newBucket(endpoint, `arch-${cls.toLowerCase()}`);
      const repo = `s3://${bucket}/r`;
      const dev = await h.loop(8 * MiB, pattern(21));
      await ok(['init', '--repo', repo, '--chunk-size', '64K', '--pack-size', '4M']);
      const sc = cls === 'STANDARD' ? [] : ['--s3-storage-class', cls];
      await ok(['full', '--repo', repo, '--device', dev, '--no-snapshot', ...sc]);
      // change most of the device, so that most of the first packs is dead after prune
      for (let off = 0; off < 6 * MiB; off += 64 * 1024) await h.write(dev, off, patternBuffer(99, off, 64 * 1024));
      keepId = JSON.parse((await ok(['full', '--repo', repo, '--device', dev, '--no-snapshot', '--json', ...sc])).stdout).backupId;
      const pr = JSON.parse((await ok(['prune', '--repo', repo, '--keep-last', '1', '--json', ...sc])).stdout);
      results[cls] = pr.gc?.packsRepacked ?? pr.packsRepacked;
      if (cls === 'GLACIER') repoArchived = repo;
      assert.equal(await restoredHash(repo, keepId), await sha256Of(dev));
    }
    assert.ok(results.STANDARD! > 0, `the control repacks: ${JSON.stringify(results)}`);
    assert.equal(results.GLACIER, 0, 'archived packs are left whole');

    // a store that answers InvalidObjectState for packs, as S3 does for GLACIER and DEEP_ARCHIVE
    const { startFaultProxy } = await import('../support/fault-proxy.js');
    const cold = await startFaultProxy({
      upstream: endpoint,
      seed: 1,
      rate: 0,
      answer: (m, url) => (m === 'GET' && url.includes('/packs/') ? { status: 403, code: 'InvalidObjectState' } : undefined),
    });
    try {
      const r = await bkp(['restore', '--repo', repoArchived, '--backup', keepId, '--to', path.join(h.dir, 'cold.img'), '--s3-endpoint', cold.endpoint]);
      assert.equal(r.code, ExitCode.OBJECT_ARCHIVED, r.stderr);
      assert.match(r.stderr, /archive storage class.*restored before/);
      assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('bkp:')).length, 1, r.stderr);
      // no image, complete-looking or partial, is left at the target: the same command runs again as it is
      assert.deepEqual((await fs.readdir(h.dir)).filter((n) => n.includes('cold.img')), []);
    } finally {
      await cold.close();
    }
  });

  test('no command prints the secret key, in text, JSON or debug output', { timeout: 180_000 }, async () => {
    const bucket = await newBucket(endpoint, 'secret');
    const repo = `s3://${bucket}/r`;
    const dev = await h.loop(4 * MiB, pattern(31));
    const out: string[] = [];
    const runs: string[][] = [
      ['init', '--repo', repo],
      ['full', '--repo', repo, '--device', dev],
      ['incr', '--repo', repo, '--device', dev, '--json'],
      ['list', '--repo', repo],
      ['list', '--repo', repo, '--json'],
      ['verify', '--repo', repo, '--read-data', '--json'],
      ['restore', '--repo', repo, '--backup', 'latest', '--to', path.join(h.dir, 'secret.img'), '--json'],
      ['prune', '--repo', repo, '--keep-last', '1', '--json'],
      ['gc', '--repo', repo, '--json'],
      ['list', '--repo', `s3://${bucket}-missing/r`],
      ['list', '--repo', repo, '--s3-endpoint', 'http://127.0.0.1:1'],
    ];
    for (const args of runs) {
      for (const debug of ['0', '1']) {
        const r = await bkp(args, { BKP_DEBUG: debug, BKP_S3_MAX_ATTEMPTS: '1' });
        out.push(`$ bkp ${args.join(' ')}\n${r.stdout}${r.stderr}`);
      }
      await fs.rm(path.join(h.dir, 'secret.img'), { force: true });
    }
    const all = out.join('\n');
    assert.match(all, /incr backup|"backupId"/, 'the commands ran');
    assert.ok(!all.includes(S3_SECRET), 'the secret key appears in the output');
  });

  describe('what users get wrong: one line, a distinct exit code, never the secret', () => {
    let bucket: string;
    before(async () => {
      bucket = await newBucket(endpoint, 'errors');
    });
    const cases: Array<{ name: string; args: () => string[]; env?: () => NodeJS.ProcessEnv; code: number; says: () => RegExp }> = [
      { name: 'bucket does not exist', args: () => ['list', '--repo', 's3://bkp-there-is-no-such-bucket/x'], code: ExitCode.BUCKET_MISSING, says: () => /bkp-there-is-no-such-bucket.*127\.0\.0\.1/ },
      { name: 'no repository under the prefix', args: () => ['list', '--repo', `s3://${bucket}/nothing`], code: ExitCode.REPO_MISSING, says: () => new RegExp(`s3://${bucket}/nothing`) },
      {
        name: "another user's bucket",
        args: () => ['list', '--repo', `s3://${bucket}/x`],
        env: () => ({ AWS_ACCESS_KEY_ID: S3_OTHER_KEY, AWS_SECRET_ACCESS_KEY: S3_OTHER_SECRET }),
        code: ExitCode.STORAGE_DENIED,
        says: () => new RegExp(`denied.*${bucket}|${bucket}.*denied`),
      },
      {
        name: 'wrong secret key',
        args: () => ['init', '--repo', `s3://${bucket}/y`],
        env: () => ({ AWS_SECRET_ACCESS_KEY: 'wrong-secret-0123456789' }),
        code: ExitCode.STORAGE_DENIED,
        says: () => new RegExp(bucket),
      },
      {
        name: 'no credentials at all',
        args: () => ['list', '--repo', `s3://${bucket}/x`],
        env: () => ({ AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: 'bkp-no-such-profile', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent' }),
        code: ExitCode.STORAGE_DENIED,
        says: () => /credentials/,
      },
      { name: 'nothing listens at the endpoint', args: () => ['list', '--repo', `s3://${bucket}/x`, '--s3-endpoint', `http://127.0.0.1:${deadPort}`], env: () => ({ BKP_S3_MAX_ATTEMPTS: '2' }), code: ExitCode.STORAGE_UNREACHABLE, says: () => new RegExp(`127\\.0\\.0\\.1:${deadPort}`) },
      { name: 'endpoint host does not resolve', args: () => ['list', '--repo', `s3://${bucket}/x`, '--s3-endpoint', 'http://no-such-host.invalid'], env: () => ({ BKP_S3_MAX_ATTEMPTS: '1' }), code: ExitCode.STORAGE_UNREACHABLE, says: () => /no-such-host\.invalid/ },
      { name: 'endpoint is a web server, not S3', args: () => ['list', '--repo', `s3://${bucket}/x`, '--s3-endpoint', `http://127.0.0.1:${webPort}`], code: ExitCode.STORAGE_UNREACHABLE, says: () => /is it an S3 endpoint/ },
      { name: 'endpoint is not a URL', args: () => ['list', '--repo', `s3://${bucket}/x`, '--s3-endpoint', 'not a url'], code: ExitCode.USAGE, says: () => /endpoint/ },
      { name: 'URL without a bucket', args: () => ['list', '--repo', 's3:///prefix'], code: ExitCode.USAGE, says: () => /no bucket/ },
      { name: 'invalid bucket name', args: () => ['list', '--repo', 's3://Bad_Bucket/x'], code: ExitCode.USAGE, says: () => /Bad_Bucket/ },
      { name: 'absurd concurrency', args: () => ['list', '--repo', `s3://${bucket}/x`, '--s3-concurrency', '0'], code: ExitCode.USAGE, says: () => /--s3-concurrency/ },
    ];
    let deadPort = 0;
    let webPort = 0;
    let web: http.Server;
    before(async () => {
      deadPort = await freePort();
      web = http.createServer((_req, res) => {
        res.writeHead(404, { 'content-type': 'text/html' });
        res.end('<html><body>Not Found</body></html>');
      });
      await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
      webPort = (web.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((r) => web.close(() => r())));
    for (const c of cases) {
      test(c.name, async () => {
        for (const debug of ['0', '1']) {
          const r = await bkp(c.args(), { ...(c.env?.() ?? {}), BKP_DEBUG: debug });
          assert.equal(r.code, c.code, `exit code (BKP_DEBUG=${debug}); stderr: ${r.stderr}`);
          const all = r.stdout + r.stderr;
          for (const secret of [S3_SECRET, S3_OTHER_SECRET, 'wrong-secret-0123456789']) assert.ok(!all.includes(secret), `the secret appears in the output:\n${all}`);
          if (debug === '1') continue;
          if (c.code !== 0) {
            const lines = r.stderr.trim().split('\n');
            assert.equal(lines.length, 1, `one line: ${r.stderr}`);
            assert.match(lines[0]!, c.says());
          } else assert.match(r.stdout, c.says());
        }
      });
    }
    test('a storage class the store does not have is a config error naming it', async () => {
      const dev = await h.loop(4 * MiB, pattern(5));
      await ok(['init', '--repo', `s3://${bucket}/sc`]);
      const r = await bkp(['full', '--repo', `s3://${bucket}/sc`, '--device', dev, '--no-snapshot', '--s3-storage-class', 'ONEZONE_IA']);
      assert.equal(r.code, ExitCode.CONFIG_INVALID, r.stderr);
      // progress lines aside, the error is one line, and there is no stack trace
      assert.equal(r.stderr.split('\n').filter((l) => /ONEZONE_IA/.test(l)).length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
      // nothing committed: the repository has no backup
      const l = await bkp(['list', '--repo', `s3://${bucket}/sc`, '--json']);
      assert.equal(l.code, 0, l.stderr);
      assert.equal(JSON.parse(l.stdout).backups.length, 0);
    });
  });
});
