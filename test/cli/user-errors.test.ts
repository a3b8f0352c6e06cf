/**
 * User mistakes: each one gives one line on stderr that names the problem, the documented exit
 * code, and never a stack trace.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { runBkp, tempDir } from '../support/env.js';
import { makeImage } from '../support/data.js';
import { ExitCode } from '../../src/errors.js';

describe('user errors', () => {
  const t = tempDir();
  const repo = path.join(t.dir, 'repo');
  const img = path.join(t.dir, 'disk.img');
  const file = path.join(t.dir, 'plain-file');
  before(async () => {
    await makeImage(img, 4 * 1024 * 1024, 'errors');
    await fs.writeFile(file, 'x');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    assert.equal((await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot'])).code, 0);
  });
  after(() => t.cleanup());

  const cases: Array<[string, () => string[], number, RegExp]> = [
    ['no command', () => [], ExitCode.USAGE, /command/],
    ['unknown command', () => ['backup-everything'], ExitCode.USAGE, /Unknown argument|unknown/i],
    ['unknown flag', () => ['list', '--repo', repo, '--colour'], ExitCode.USAGE, /Unknown argument/],
    ['missing --device', () => ['full', '--repo', repo, '--no-snapshot'], ExitCode.USAGE, /device/],
    ['device does not exist', () => ['full', '--repo', repo, '--device', path.join(t.dir, 'nope'), '--no-snapshot'], ExitCode.DEVICE_MISSING, /does not exist/],
    ['a directory as device', () => ['full', '--repo', repo, '--device', t.dir, '--no-snapshot'], ExitCode.NOT_A_DEVICE, /directory/],
    ['a character device as device', () => ['full', '--repo', repo, '--device', '/dev/null', '--no-snapshot'], ExitCode.NOT_A_DEVICE, /neither a block device nor a regular file/],
    ['repository missing', () => ['list', '--repo', path.join(t.dir, 'no-repo')], ExitCode.REPO_MISSING, /no bkp repository/],
    ['no repository named', () => ['list'], ExitCode.USAGE, /no repository/],
    ['repository path is a file', () => ['list', '--repo', file], ExitCode.NOT_A_DEVICE, /not a directory/],
    ['init over an existing repository', () => ['init', '--repo', repo], ExitCode.REPO_EXISTS, /already exists/],
    ['init in a non-empty directory', () => ['init', '--repo', path.dirname(img)], ExitCode.REPO_EXISTS, /not empty/],
    ['chunk size not a size', () => ['init', '--repo', path.join(t.dir, 'r2'), '--chunk-size', 'big'], ExitCode.USAGE, /not a size/],
    ['chunk size too small', () => ['init', '--repo', path.join(t.dir, 'r3'), '--chunk-size', '4K'], ExitCode.USAGE, /chunk size must be/],
    ['negative compression level', () => ['init', '--repo', path.join(t.dir, 'r4'), '--compression-level', '-3'], ExitCode.USAGE, /compression level/],
    ['unknown backup id', () => ['restore', '--repo', repo, '--backup', '19990101', '--to', path.join(t.dir, 'o.img')], ExitCode.BACKUP_NOT_FOUND, /no backup 19990101/],
    ['unknown device in restore', () => ['restore', '--repo', repo, '--device', '/dev/sdz', '--to', path.join(t.dir, 'o.img')], ExitCode.BACKUP_NOT_FOUND, /no backup of device/],
    ['restore into a missing directory', () => ['restore', '--repo', repo, '--to', path.join(t.dir, 'no', 'dir', 'o.img')], ExitCode.DEVICE_MISSING, /directory of restore target/],
    ['restore onto an existing file', () => ['restore', '--repo', repo, '--to', file], ExitCode.TARGET_HAS_DATA, /--force/],
    ['restore onto a directory', () => ['restore', '--repo', repo, '--to', t.dir, '--force'], ExitCode.NOT_A_DEVICE, /directory/],
    ['restore without --to', () => ['restore', '--repo', repo], ExitCode.USAGE, /to/],
    ['snapshot asked of an image file without the module', () => ['full', '--repo', repo, '--device', img], ExitCode.BLKSNAP_UNAVAILABLE, /--no-snapshot/],
    ['same device twice', () => ['full', '--repo', repo, '--device', img, '--device', img, '--no-snapshot'], ExitCode.USAGE, /twice/],
    ['verify of an unknown backup', () => ['verify', '--repo', repo, '--backup', 'zzz'], ExitCode.BACKUP_NOT_FOUND, /no backup zzz/],
  ];

  for (const [name, args, code, words] of cases) {
    test(name, async () => {
      const r = await runBkp(args());
      assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
      assert.match(r.stderr, words);
      assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
      assert.doesNotMatch(r.stderr, /internal error/);
      const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('warning:'));
      assert.equal(lines.length, 1, `one line of error, got: ${r.stderr}`);
    });
  }
});
