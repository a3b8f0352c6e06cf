/**
 * User mistakes: each one gives one line on stderr that names the problem, the documented exit
 * code, and never a stack trace.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import { BKP, runBkp, sh, tempDir, type RunResult } from '../support/env.js';
import { makeImage } from '../support/data.js';
import { attachLoop, type Loop } from '../support/loop.js';
import { blksnapHarness, pattern, type BlksnapHarness } from '../support/blksnap-fake.js';
import { ExitCode } from '../../src/errors.js';

/** One line on stderr that names the problem, the documented exit code, no stack trace. */
function assertUserError(r: RunResult, code: number, words: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, words);
  assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /^ {4}at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /internal error/);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('warning:'));
  assert.equal(lines.length, 1, `one line of error, got: ${r.stderr}`);
}

/** bkp as the unprivileged user nobody (65534), as a user who forgot sudo would run it. */
function runAsNobody(args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BKP, ...args], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * Starts a bkp that pauses at `point` (BKP_PAUSE_AT NAME:FILE), runs `check` with its pid while
 * it waits there, lets it go on, and returns its exit code.
 */
async function whilePaused(args: string[], env: NodeJS.ProcessEnv, point: string, check: (pid: number) => Promise<void>): Promise<number | null> {
  const flag = point.slice(point.indexOf(':') + 1);
  const child = spawn(process.execPath, [BKP, ...args], { env: { ...process.env, ...env, BKP_PAUSE_AT: point }, stdio: ['ignore', 'ignore', 'pipe'] });
  const done = new Promise<number | null>((r) => child.on('close', r));
  try {
    for (let i = 0; !existsSync(`${flag}.reached`); i++) {
      assert.ok(i < 1500, 'the backup reached its pause point');
      await new Promise((r) => setTimeout(r, 20));
    }
    await check(child.pid!);
  } finally {
    await fs.rm(`${flag}.reached`, { force: true });
  }
  return done;
}

describe('user errors', () => {
  const t = tempDir();
  const repo = path.join(t.dir, 'repo');
  const img = path.join(t.dir, 'disk.img');
  const file = path.join(t.dir, 'plain-file');
  const emptyRepo = path.join(t.dir, 'empty-repo');
  before(async () => {
    await makeImage(img, 4 * 1024 * 1024, 'errors');
    await fs.writeFile(file, 'x');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    assert.equal((await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot'])).code, 0);
    assert.equal((await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot'])).code, 0); // two backups: ids that share a prefix
    assert.equal((await runBkp(['init', '--repo', emptyRepo])).code, 0);
  });
  after(() => t.cleanup());

  const cases: Array<[string, () => string[], number, RegExp]> = [
    ['negative chunk size', () => ['init', '--repo', path.join(t.dir, 'r5'), '--chunk-size', '-1'], ExitCode.USAGE, /--chunk-size "-1" is not a size/],
    ['absurd chunk size (1T)', () => ['init', '--repo', path.join(t.dir, 'r6'), '--chunk-size', '1T'], ExitCode.USAGE, /chunk size must be .* \(got 1099511627776\)/],
    ['zero pack size', () => ['init', '--repo', path.join(t.dir, 'r7'), '--pack-size', '0'], ExitCode.USAGE, /--pack-size "0" is not a size/],
    ['negative difference storage limit', () => ['full', '--repo', repo, '--device', img, '--no-snapshot', '--diff-storage-limit', '-5'], ExitCode.USAGE, /--diff-storage-limit "-5" is not a size/],
    ['compression level 99', () => ['full', '--repo', repo, '--device', img, '--no-snapshot', '--compression-level', '99'], ExitCode.USAGE, /compression level must be 1 to 19/],
    ['negative --keep-last', () => ['prune', '--repo', repo, '--keep-last', '-1'], ExitCode.USAGE, /--keep-last must be a whole number/],
    ['prune without a rule', () => ['prune', '--repo', repo], ExitCode.USAGE, /name what to keep/],
    ['conflicting flags: --no-snapshot with --no-fallback', () => ['incr', '--repo', repo, '--device', img, '--no-snapshot', '--no-fallback'], ExitCode.USAGE, /--no-fallback needs a snapshot/],
    ['an s3 URL with no bucket', () => ['list', '--repo', 's3://'], ExitCode.USAGE, /s3:\/\//],
    ['repository path under a file', () => ['init', '--repo', path.join(file, 'sub')], ExitCode.NOT_A_DEVICE, /plain-file\/sub: a part of the path is a file/],
    ['restore from a repository without backups', () => ['restore', '--repo', emptyRepo, '--to', path.join(t.dir, 'o.img')], ExitCode.BACKUP_NOT_FOUND, /has no backups/],
    ['no command', () => [], ExitCode.USAGE, /command/],
    ['unknown command', () => ['backup-everything'], ExitCode.USAGE, /^bkp: unknown command: backup-everything \(commands: init, full, incr, run, list, restore, verify, repair, prune, gc, status, snapshot, config, completion\)$/m],
    ['mistyped command: named, with the closest one', () => ['ful', '--repo', repo, '--device', img], ExitCode.USAGE, /^bkp: unknown command: ful; did you mean full\?$/m],
    ['mistyped command alone', () => ['verfy'], ExitCode.USAGE, /unknown command: verfy; did you mean verify\?/],
    ['unknown flag', () => ['list', '--repo', repo, '--colour'], ExitCode.USAGE, /^bkp: unknown option --colour for bkp list \(bkp list --help lists its options\)$/m],
    ['mistyped flag: named before the required one it misses', () => ['full', '--repo', repo, '--devcie', img, '--no-snapshot'], ExitCode.USAGE, /^bkp: unknown option --devcie for bkp full; did you mean --device\?$/m],
    ['mistyped negated flag', () => ['full', '--repo', repo, '--device', img, '--no-snapshto'], ExitCode.USAGE, /unknown option --no-snapshto for bkp full; did you mean --no-snapshot\?/],
    ['mistyped flag of a subcommand', () => ['snapshot', 'cleanup', '--al'], ExitCode.USAGE, /unknown option --al for bkp snapshot cleanup; did you mean --all\?/],
    // a group runs none of its subcommands by default (`bkp snapshot list` used to run snapshot cleanup)
    ['unknown subcommand of snapshot', () => ['snapshot', 'list'], ExitCode.USAGE, /^bkp: unknown subcommand: snapshot list \(bkp snapshot takes: cleanup\)$/m],
    ['unknown subcommand of snapshot, with --all', () => ['snapshot', 'destroy', '--all'], ExitCode.USAGE, /unknown subcommand: snapshot destroy/],
    ['snapshot without a subcommand', () => ['snapshot'], ExitCode.USAGE, /^bkp: bkp snapshot needs a subcommand: cleanup$/m],
    ['unknown subcommand of config', () => ['config', 'show'], ExitCode.USAGE, /^bkp: unknown subcommand: config show \(bkp config takes: check\)$/m],
    ['mistyped subcommand of config', () => ['config', 'chek'], ExitCode.USAGE, /unknown subcommand: config chek; did you mean config check\?/],
    ['config without a subcommand', () => ['config'], ExitCode.USAGE, /bkp config needs a subcommand: check/],
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
    // an id prefix means one backup, in every command that takes --backup
    ['verify with an ambiguous id prefix', () => ['verify', '--repo', repo, '--backup', '2'], ExitCode.BACKUP_NOT_FOUND, /^bkp: backup id 2 is ambiguous: it begins 2 backups \(2\d{7}T[^,]+, 2\d{7}T[^)]+\); give more of the id$/m],
    ['restore with an ambiguous id prefix', () => ['restore', '--repo', repo, '--backup', '2', '--to', path.join(t.dir, 'o.img')], ExitCode.BACKUP_NOT_FOUND, /^bkp: backup id 2 is ambiguous: it begins 2 backups/m],
  ];

  for (const [name, args, code, words] of cases) {
    test(name, async () => assertUserError(await runBkp(args()), code, words));
  }

  test('verify --backup latest verifies the newest backup, as restore --backup latest restores it', async () => {
    const list = JSON.parse((await runBkp(['list', '--repo', repo, '--json'])).stdout) as { backups: Array<{ backupId: string }> };
    const newest = list.backups.map((b) => b.backupId).sort().at(-1)!;
    const r = await runBkp(['verify', '--repo', repo, '--backup', 'latest', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { backups: Array<{ backupId: string }> }).backups.map((b) => b.backupId), [newest]);
    const out = path.join(t.dir, 'latest.img');
    const rr = await runBkp(['restore', '--repo', repo, '--backup', 'latest', '--to', out, '--json']);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal((JSON.parse(rr.stdout) as { backupId: string }).backupId, newest);
    await fs.rm(out);
  });

  // hostile input (issue 18 item 19): one line, its own exit code, no secret repeated
  describe('hostile input', () => {
    const loop = path.join(t.dir, 'loop-a');
    const empty = path.join(t.dir, 'empty.img');
    before(async () => {
      await fs.symlink(path.join(t.dir, 'loop-b'), loop);
      await fs.symlink(loop, path.join(t.dir, 'loop-b'));
      await fs.writeFile(empty, '');
    });
    const hostile: Array<[string, () => string[], number, RegExp]> = [
      ['a symbolic link loop as device', () => ['full', '--repo', repo, '--device', loop, '--no-snapshot'], ExitCode.NOT_A_DEVICE, /^bkp: device .*loop-a: too many levels of symbolic links \(a symbolic link loop\?\)$/m],
      ['a symbolic link loop as restore target', () => ['restore', '--repo', repo, '--to', loop, '--force'], ExitCode.NOT_A_DEVICE, /^bkp: restore target .*loop-a: too many levels of symbolic links/m],
      ['/proc/self/mem as device', () => ['full', '--repo', repo, '--device', '/proc/self/mem', '--no-snapshot'], ExitCode.NOT_A_DEVICE, /^bkp: device \/proc\/self\/mem is a file of the kernel's proc filesystem, not a block device or image file$/m],
      ['a /proc file as device', () => ['full', '--repo', repo, '--device', '/proc/cpuinfo', '--no-snapshot'], ExitCode.NOT_A_DEVICE, /kernel's proc filesystem/],
      ['a /sys file as device', () => ['full', '--repo', repo, '--device', '/sys/kernel/uevent_seqnum', '--no-snapshot'], ExitCode.NOT_A_DEVICE, /kernel's sysfs filesystem/],
      ['/proc/self/mem as restore target (also with --force)', () => ['restore', '--repo', repo, '--to', '/proc/self/mem', '--force'], ExitCode.NOT_A_DEVICE, /^bkp: restore target \/proc\/self\/mem is a file of the kernel's proc filesystem/m],
      ['an empty file as device', () => ['full', '--repo', repo, '--device', empty, '--no-snapshot'], ExitCode.NOT_A_DEVICE, /^bkp: device .*empty\.img is empty \(0 bytes\): there is nothing to back up$/m],
      ['a newline in a device path', () => ['full', '--repo', repo, '--device', `${img}\nrm -rf /`, '--no-snapshot'], ExitCode.USAGE, /^bkp: argument ".*disk\.img\\nrm -rf \/" holds a control character \(a newline, tab or escape\); bkp refuses paths and names that hold one$/m],
      ['an escape character in a restore target', () => ['restore', '--repo', repo, '--to', path.join(t.dir, 'o\x1b[2J.img')], ExitCode.USAGE, /argument ".*o\\u001b\[2J\.img" holds a control character/],
      ['credentials in an s3:// URL', () => ['list', '--repo', 's3://AKIAUSER:s3cr3tpw@bucket-name/prefix'], ExitCode.USAGE, /^bkp: S3 URL s3:\/\/\*\*\*@bucket-name\/prefix holds credentials \(user:password@\)/m],
      ['credentials in another URL', () => ['list', '--repo', 'https://AKIAUSER:s3cr3tpw@example.com/x'], ExitCode.USAGE, /^bkp: repository URL https:\/\/\*\*\*@example\.com\/x has an unsupported scheme/m],
    ];
    for (const [name, args, code, words] of hostile) {
      test(name, async () => {
        const r = await runBkp(args());
        assertUserError(r, code, words);
        assert.doesNotMatch(r.stderr, /s3cr3tpw|AKIAUSER/, 'credentials are never echoed');
        assert.ok(!r.stderr.includes('\x1b'), 'no raw escape character');
      });
    }

    test('a control character in BKP_REPO', async () => {
      assertUserError(await runBkp(['list'], { env: { BKP_REPO: `${repo}\n2` } }), ExitCode.USAGE, /^bkp: repository ".*\\n2" holds a control character/m);
    });

    test('a control character in a device path of the configuration file', async () => {
      const config = path.join(t.dir, 'hostile-config.json');
      await fs.writeFile(config, JSON.stringify({ jobs: { j: { repo, devices: [`${img}\nx`] } } }));
      assertUserError(await runBkp(['config', 'check', '--config', config]), ExitCode.CONFIG_INVALID, /jobs\.j\.devices\[0\] holds a control character/);
    });

    for (const [field, value, words] of [
      ['packSize', 1, /pack size must be between the chunk size and 1 GiB \(got 1\)/],
      ['packSize', 4 * 1024 * 1024 * 1024, /pack size must be between the chunk size and 1 GiB/],
      ['chunkSize', 4096, /chunk size must be a power of two from 64 KiB to 64 MiB \(got 4096\)/],
      ['chunkSize', 1048577, /chunk size must be a power of two/],
      ['chunkSize', 3 * 1024 * 1024, /chunk size must be a power of two/],
      ['compression', { algorithm: 'zstd', level: 99 }, /compression level must be 1 to 19 \(got 99\)/],
      ['compression', { algorithm: 'gzip', level: 3 }, /compression algorithm must be zstd \(got "gzip"\)/],
      ['id', 'x', /id must be a UUID/],
      ['createdAt', 'yesterday', /createdAt must be a date and time/],
    ] as Array<[string, unknown, RegExp]>) {
      test(`a repository config with ${field} ${JSON.stringify(value)} is refused on open`, async () => {
        const r2 = path.join(t.dir, `bad-config-${field}-${String(JSON.stringify(value)).replace(/\W/g, '')}`);
        assert.equal((await runBkp(['init', '--repo', r2])).code, 0);
        const c = JSON.parse(await fs.readFile(path.join(r2, 'config'), 'utf8')) as Record<string, unknown>;
        c[field] = value;
        await fs.writeFile(path.join(r2, 'config'), JSON.stringify(c));
        for (const args of [['list', '--repo', r2], ['full', '--repo', r2, '--device', img, '--no-snapshot']]) {
          assertUserError(await runBkp(args), ExitCode.CORRUPT, new RegExp(`^bkp: repository config in ${r2} is invalid: ${words.source}`, 'm'));
        }
      });
    }
  });

  // without root: the repository directory (0700, root's) and the device cannot be opened
  test('no permission on the repository (as nobody)', async () => assertUserError(await runAsNobody(['list', '--repo', repo]), ExitCode.PERMISSION, /permission denied on repository .*run bkp as root/));
  test('no permission on the device (as nobody)', async () => {
    const dev = attachLoop(img);
    try {
      assertUserError(await runAsNobody(['full', '--repo', '/tmp', '--device', dev.dev, '--no-snapshot']), ExitCode.PERMISSION, new RegExp(`permission denied on device ${dev.dev}`));
    } finally {
      dev.detach();
    }
  });
});

/** Restore targets that are real block devices: too small, mounted, holding a filesystem, being backed up. */
describe('user errors: restore targets', () => {
  const t = tempDir();
  const repo = path.join(t.dir, 'repo');
  const img = path.join(t.dir, 'disk.img');
  const loops: Loop[] = [];
  const mnt = path.join(t.dir, 'mnt');
  const loopOf = async (size: number, name: string) => {
    const f = path.join(t.dir, name);
    await fs.writeFile(f, '');
    await fs.truncate(f, size);
    const l = attachLoop(f);
    loops.push(l);
    return l.dev;
  };
  before(async () => {
    await makeImage(img, 8 * 1024 * 1024, 'targets');
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    assert.equal((await runBkp(['full', '--repo', repo, '--device', img, '--no-snapshot'])).code, 0);
  });
  after(() => {
    if (existsSync(mnt)) sh('umount', ['-q', mnt]);
    for (const l of loops) l.detach();
    t.cleanup();
  });

  test('restore target too small', async () => {
    const small = await loopOf(4 * 1024 * 1024, 'small.img');
    assertUserError(await runBkp(['restore', '--repo', repo, '--to', small, '--force']), ExitCode.TARGET_TOO_SMALL, /holds 4194304 bytes but the backup needs 8388608/);
  });

  test('restore target mounted (also with --force)', async () => {
    const dev = await loopOf(16 * 1024 * 1024, 'mounted.img');
    sh('mkfs.ext4', ['-q', '-F', dev]);
    await fs.mkdir(mnt);
    sh('mount', [dev, mnt]);
    try {
      assertUserError(await runBkp(['restore', '--repo', repo, '--to', dev, '--force']), ExitCode.TARGET_IN_USE, /is in use: it is mounted on/);
    } finally {
      sh('umount', [mnt]);
      await fs.rmdir(mnt);
    }
    // unmounted, the filesystem is still there: refused without --force
    assertUserError(await runBkp(['restore', '--repo', repo, '--to', dev]), ExitCode.TARGET_HAS_DATA, /holds a ext4 signature.*--force/);
  });

  test('restore target is the device a --no-snapshot backup is reading (also with --force)', async () => {
    const dev = await loopOf(8 * 1024 * 1024, 'source.img');
    const done = await whilePaused(['full', '--repo', repo, '--device', dev, '--no-snapshot', '--quiet'], {}, `source-opened:${path.join(t.dir, 'pause')}`, async (pid) =>
      assertUserError(await runBkp(['restore', '--repo', repo, '--to', dev, '--force']), ExitCode.TARGET_IN_USE, new RegExp(`is in use: it is being backed up \\(pid ${pid}: bkp full`)),
    );
    assert.equal(done, 0, 'the backup itself went on');
  });

  test('restore target is a device a backup has locked but not opened yet; the restore holds the lock only while it runs', async () => {
    const dev = await loopOf(8 * 1024 * 1024, 'locked.img');
    const done = await whilePaused(['full', '--repo', repo, '--device', dev, '--no-snapshot', '--quiet'], {}, `backup-locked:${path.join(t.dir, 'pause-locked')}`, async (pid) =>
      assertUserError(await runBkp(['restore', '--repo', repo, '--to', dev, '--force']), ExitCode.TARGET_IN_USE, new RegExp(`restore target ${dev} is in use: device ${dev} is locked by pid ${pid} `)),
    );
    assert.equal(done, 0, 'the backup itself went on');
    const r = await runBkp(['restore', '--repo', repo, '--to', dev, '--force', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const again = await runBkp(['full', '--repo', repo, '--device', dev, '--no-snapshot', '--quiet']);
    assert.equal(again.code, 0, `a backup of the restored device takes its lock: ${again.stderr}`);
  });
});

describe('user errors: restore onto a device in a blksnap snapshot', () => {
  let h: BlksnapHarness;
  before(async () => (h = await blksnapHarness('fake', { portionSectors: 8192 })));
  after(() => h.cleanup());

  test('restore target is a device whose snapshot a backup is reading (also with --force)', async () => {
    const dev = await h.loop(8 * 1024 * 1024, pattern(7));
    const repo = path.join(h.dir, 'repo');
    const diff = path.join(h.dir, 'diff');
    await fs.mkdir(diff);
    const env = { BKP_BLKSNAP_FAKE: h.fakeDir };
    assert.equal((await runBkp(['init', '--repo', repo])).code, 0);
    assert.equal((await runBkp(['full', '--repo', repo, '--device', dev, '--diff-storage', diff, '--diff-storage-limit', '64M', '--quiet'], { env })).code, 0);
    const args = ['incr', '--repo', repo, '--device', dev, '--diff-storage', diff, '--diff-storage-limit', '64M', '--quiet'];
    const done = await whilePaused(args, env, `snapshot-taken:${path.join(h.dir, 'pause')}`, async () =>
      assertUserError(await runBkp(['restore', '--repo', repo, '--to', dev, '--force'], { env }), ExitCode.TARGET_IN_USE, /is in use: it is in blksnap snapshot [0-9a-f-]{36}: a backup is reading it/),
    );
    assert.equal(done, 0, 'the backup itself went on');
  });
});
