/**
 * The README's set-up (`npm ci && npm run demo`) leaves `bkp` on PATH: the demo's first step,
 * scripts/install-bin.mjs, links bin/bkp.js into a PATH directory. Here into a temporary one
 * (the demo uses /usr/local/bin as root); .ci/run checks `bkp --version` from PATH for real.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { execFile } from 'node:child_process';
import { ROOT, tempDir } from '../support/env.js';

const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(cmd, args, { env, cwd: '/', timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

test('after the set-up step, bkp --version works from PATH', async () => {
  const t = tempDir();
  try {
    const bin = path.join(t.dir, 'bin');
    const demoSource = await fs.readFile(path.join(ROOT, 'scripts', 'demo.mjs'), 'utf8');
    assert.match(demoSource, /install-bin\.mjs/, 'npm run demo runs the install step');
    const r = await run(process.execPath, [path.join(ROOT, 'scripts', 'install-bin.mjs'), '--dir', bin]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`bkp installed: ${bin}/bkp -> ${ROOT}/bin/bkp.js`));
    const pkg = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await run('bash', ['-c', 'bkp --version'], { ...process.env, PATH: `${bin}:/usr/bin:/bin:${path.dirname(process.execPath)}` });
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), pkg.version);
    // again: nothing changes; a bkp that is not such a link is left alone
    assert.equal((await run(process.execPath, [path.join(ROOT, 'scripts', 'install-bin.mjs'), '--dir', bin])).code, 0);
    const other = path.join(t.dir, 'other');
    await fs.mkdir(other);
    await fs.writeFile(path.join(other, 'bkp'), '#!/bin/sh\necho other\n', { mode: 0o755 });
    const refused = await run(process.execPath, [path.join(ROOT, 'scripts', 'install-bin.mjs'), '--dir', other]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /exists and is not a link to a bkp checkout; left as it is/);
    assert.equal(await fs.readFile(path.join(other, 'bkp'), 'utf8'), '#!/bin/sh\necho other\n');
  } finally {
    t.cleanup();
  }
});
