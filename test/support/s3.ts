/**
 * The real S3 server the S3 tests run against: Ceph's RADOS Gateway on 127.0.0.1
 * (test/support/ceph-s3-server.sh). scripts/test.mjs starts one for the whole run and passes its
 * endpoint in BKP_TEST_S3_ENDPOINT; a test file run on its own starts its own.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { ROOT } from './env.js';

export const S3_KEY = 'bkptestkey';
export const S3_SECRET = 'bkptestsecret';
/** A second user, who owns nothing of the first one's. */
export const S3_OTHER_KEY = 'othertestkey';
export const S3_OTHER_SECRET = 'othertestsecret';

let started: Promise<string> | undefined;
// the SDK's Node 20 deprecation notice would land in every test's output (bin/bkp.js silences it for bkp)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a server (blocking, ~1–2 s) and arranges for it to stop when this process exits. */
export async function startS3Server(): Promise<{ endpoint: string; stop: () => void }> {
  const script = path.join(ROOT, 'test', 'support', 'ceph-s3-server.sh');
  const dir = path.join(os.tmpdir(), `bkp-s3-${process.pid}-${randomBytes(3).toString('hex')}`);
  const stop = () => {
    try {
      execFileSync('bash', [script, 'stop', dir], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  };
  for (let attempt = 0; ; attempt++) {
    const [s3Port, monPort] = [await freePort(), await freePort()];
    try {
      execFileSync('bash', [script, 'start', dir, String(s3Port), String(monPort)], { stdio: ['ignore', 'pipe', 'pipe'], cwd: os.tmpdir() });
      return { endpoint: `http://127.0.0.1:${s3Port}`, stop };
    } catch (e) {
      stop();
      const err = e as { status?: number; stderr?: Buffer };
      if (err.status === 3 || attempt >= 2) {
        throw new Error(`cannot start the test S3 server (Ceph RADOS Gateway): ${String(err.stderr ?? e).trim().split('\n').pop()}`);
      }
    }
  }
}

/** The endpoint of the run's S3 server, starting one for this process if none was given. */
export function s3Endpoint(): Promise<string> {
  if (process.env.BKP_TEST_S3_ENDPOINT) return Promise.resolve(process.env.BKP_TEST_S3_ENDPOINT);
  started ??= startS3Server().then(({ endpoint, stop }) => {
    process.on('exit', stop);
    return endpoint;
  });
  return started;
}

/** Environment for a bkp process (or SDK client) talking to the test server. */
export function s3Env(endpoint: string): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: S3_KEY,
    AWS_SECRET_ACCESS_KEY: S3_SECRET,
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

export function adminClient(endpoint: string, creds = { accessKeyId: S3_KEY, secretAccessKey: S3_SECRET }): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: creds,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A new, empty bucket with a unique name. */
export async function newBucket(endpoint: string, label = 'test'): Promise<string> {
  const name = `bkp-${label}-${process.pid}-${randomBytes(4).toString('hex')}`.toLowerCase().slice(0, 63);
  const c = adminClient(endpoint);
  try {
    await c.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    c.destroy();
  }
  return name;
}
