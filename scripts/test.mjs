#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner. Listing the
// files here keeps the command the same on Node 20 (no globs) and 22/24 (globs).
import { readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const filter = process.argv.slice(2);
const files = readdirSync(join(root, 'dist', 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filter.length === 0 || filter.some((w) => f.includes(w)))
  .sort()
  .map((f) => join('dist', 'test', f));
if (files.length === 0) {
  console.error('no test files found under dist/test (did tsc run?)');
  process.exit(1);
}
// device locks of this run stay in this run (not /run/bkp/locks, shared with real backups and other checkouts)
const lockDir = process.env.BKP_LOCK_DIR ? undefined : mkdtempSync(join(tmpdir(), 'bkp-test-locks-'));
const env = lockDir ? { ...process.env, BKP_LOCK_DIR: lockDir } : process.env;
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { cwd: root, stdio: 'inherit', env });
if (lockDir) rmSync(lockDir, { recursive: true, force: true });
process.exit(r.status ?? 1);
