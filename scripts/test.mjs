#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner. Listing the
// files here keeps the command the same on Node 20 (no globs) and 22/24 (globs).
//
// The S3 tests need a real S3 server: one Ceph RADOS Gateway on 127.0.0.1 is started here for the
// whole run (test/support/ceph-s3-server.sh) and its endpoint passed in BKP_TEST_S3_ENDPOINT.
// BKP_TEST_CONCURRENCY: test files run at once (default 2; the kernel lab runs them one by one).
// Without Ceph's packages the run fails, unless BKP_TEST_S3=skip is set on purpose.
import { readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';

const root = new URL('..', import.meta.url).pathname;
const filter = process.argv.slice(2);
let files = readdirSync(join(root, 'dist', 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filter.length === 0 || filter.some((w) => f.includes(w)))
  .sort()
  .map((f) => join('dist', 'test', f));
if (files.length === 0) {
  console.error('no test files found under dist/test (did tsc run?)');
  process.exit(1);
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

const env = { ...process.env };
// device locks of this run stay in this run (not /run/bkp/locks, shared with real backups and other checkouts)
const lockDir = env.BKP_LOCK_DIR ? undefined : mkdtempSync(join(tmpdir(), 'bkp-test-locks-'));
if (lockDir) env.BKP_LOCK_DIR = lockDir;
let stopS3 = () => {};
// the test files that need the server (s3-config is pure)
const s3Files = files.filter((f) => /s3-target|e2e\/s3/.test(f));
if (s3Files.length && !env.BKP_TEST_S3_ENDPOINT) {
  if (env.BKP_TEST_S3 === 'skip') {
    console.error(`BKP_TEST_S3=skip: not running ${s3Files.join(', ')}`);
    files = files.filter((f) => !s3Files.includes(f));
  } else {
    const script = join(root, 'test', 'support', 'ceph-s3-server.sh');
    const dir = join(mkdtempSync(join(tmpdir(), 'bkp-s3-')), 'ceph');
    stopS3 = () => spawnSync('bash', [script, 'stop', dir], { stdio: 'ignore' });
    let started = false;
    for (let attempt = 1; attempt <= 3 && !started; attempt++) {
      const port = await freePort();
      const mon = await freePort();
      const t0 = Date.now();
      try {
        execFileSync('bash', [script, 'start', dir, String(port), String(mon)], { stdio: ['ignore', 'pipe', 'pipe'], cwd: tmpdir() });
        env.BKP_TEST_S3_ENDPOINT = `http://127.0.0.1:${port}`;
        console.error(`S3 server (Ceph RADOS Gateway) at ${env.BKP_TEST_S3_ENDPOINT}, started in ${Date.now() - t0} ms`);
        started = true;
      } catch (e) {
        stopS3();
        const why = String(e.stderr ?? e).trim().split('\n').pop();
        if (e.status === 3 || attempt === 3) {
          console.error(`cannot start the S3 test server: ${why}\n(install it with: apt-get install radosgw ceph-mon ceph-osd; or set BKP_TEST_S3=skip to leave out the S3 tests)`);
          process.exit(1);
        }
      }
    }
  }
}
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(sig, () => {
    stopS3();
    if (lockDir) rmSync(lockDir, { recursive: true, force: true });
    process.exit(code);
  });
}
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${env.BKP_TEST_CONCURRENCY ?? 2}`, ...files], { cwd: root, stdio: 'inherit', env });
stopS3();
if (lockDir) rmSync(lockDir, { recursive: true, force: true });
process.exit(r.status ?? 1);
