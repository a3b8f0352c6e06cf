/**
 * --no-snapshot on a device whose filesystem is mounted read-write (issue 18 item 7): a warning
 * naming the mount point, also with --quiet (it is about the consistency of the stored data), and
 * in the JSON `warnings`; a read-only mount gets no such warning. Real loop device, real ext4.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, sh, tempDir } from '../support/env.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { readWriteMountPoints } from '../../src/device/mounts.js';

describe('--no-snapshot on a mounted filesystem', () => {
  const t = tempDir('bkp-mounted-');
  const img = path.join(t.dir, 'fs.img');
  const mnt = path.join(t.dir, 'mnt');
  const repo = path.join(t.dir, 'repo');
  let loop: Loop;
  before(async () => {
    await fs.writeFile(img, Buffer.alloc(0));
    await fs.truncate(img, 16 * 1024 * 1024);
    sh('mkfs.ext4', ['-q', '-F', img]);
    loop = attachLoop(img);
    await fs.mkdir(mnt);
    sh('mount', [loop.dev, mnt]);
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
  });
  after(() => {
    try {
      sh('umount', [mnt]);
    } catch {
      // not mounted
    }
    loop.detach();
    t.cleanup();
  });

  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const warning = (dev: string) => new RegExp(`^warning: ${esc(dev)} is mounted read-write on ${esc(mnt)}: without a snapshot its backup may be inconsistent`, 'm');

  test('mounted read-write: a warning naming the mount point, shown with --quiet, in the JSON warnings', async () => {
    for (const dev of [loop.dev, img]) {
      const r = await runBkp(['full', '--repo', repo, '--device', dev, '--no-snapshot', '--quiet', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, warning(dev));
      assert.doesNotMatch(r.stderr, /directly \(--no-snapshot\)/, 'the generic warning stays hidden by --quiet');
      const out = JSON.parse(r.stdout);
      assert.ok(out.warnings.some((w: string) => w.startsWith(`${dev} is mounted read-write on ${mnt}`)), JSON.stringify(out.warnings));
    }
  });

  test('mounted read-only: no such warning', async () => {
    sh('mount', ['-o', 'remount,ro', mnt]);
    const r = await runBkp(['full', '--repo', repo, '--device', loop.dev, '--no-snapshot', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /mounted read-write/);
    assert.ok(!JSON.parse(r.stdout).warnings.some((w: string) => /mounted/.test(w)));
  });

  test('readWriteMountPoints reads the per-mount option, and octal-escaped spaces', () => {
    const info = ['36 1 7:3 / /mnt/a\\040b rw,relatime shared:1 - ext4 /dev/loop3 rw', '37 1 7:4 / /mnt/c ro,relatime - ext4 /dev/loop4 ro', '38 1 8:1 / /x rw - xfs /dev/sda1 rw'].join('\n');
    assert.deepEqual(readWriteMountPoints(info, new Set(['7:3', '7:4'])), ['/mnt/a b']);
  });
});
