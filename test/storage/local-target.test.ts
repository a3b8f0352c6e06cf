import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { ObjectMissingError, type Target } from '../../src/storage/target.js';
import { ExitCode, isSystemError, NoSpaceError } from '../../src/errors.js';
import { targetConformance } from './conformance.js';

targetConformance('LocalTarget', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-local-target-'));
  const root = path.join(dir, 'repo');
  await fs.mkdir(root, { mode: 0o700 });
  return { target: new LocalTarget(root), cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
});

async function listKeys(t: Target, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of t.list(prefix)) out.push(o.key);
  return out.sort();
}

/** Every file under dir whose name starts with .tmp- (what an interrupted put leaves). */
async function tempFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.startsWith('.tmp-')) out.push(path.join(e.parentPath, e.name));
  }
  return out;
}

describe('LocalTarget on disk', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bkp-local-only-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('a FIFO, a socket or a device in place of an object is damage (exit 12) at once, never a wait', async () => {
    const root = path.join(dir, 'special', 'repo');
    const t = new LocalTarget(root);
    await t.put('config', Buffer.from('x'));
    await fs.mkdir(path.join(root, 'packs', 'ab'), { recursive: true });
    execFileSync('mkfifo', [path.join(root, 'packs', 'ab', 'fifo.pack')]);
    await fs.rm(path.join(root, 'config'));
    execFileSync('mkfifo', [path.join(root, 'config')]);
    execFileSync('mknod', [path.join(root, 'packs', 'ab', 'null.pack'), 'c', '1', '3']); // /dev/null
    const server = (await import('node:net')).createServer().listen(path.join(root, 'packs', 'ab', 'sock.pack'));
    await new Promise((r) => server.once('listening', r));
    try {
      for (const [key, what] of [
        ['config', 'a FIFO'],
        ['packs/ab/fifo.pack', 'a FIFO'],
        ['packs/ab/null.pack', 'a character device'],
        ['packs/ab/sock.pack', 'a socket'],
      ] as const) {
        for (const read of [() => t.get(key), () => t.get(key, { offset: 0, length: 10 })]) {
          await assert.rejects(read(), (e: Error & { exitCode?: number }) => {
            assert.equal(e.exitCode, ExitCode.CORRUPT);
            assert.equal(e.message, `repository object ${key} in ${path.resolve(root)} is ${what}, not a regular file: the repository is damaged`);
            return true;
          });
        }
      }
    } finally {
      server.close();
    }
  });

  test('creates files 0600 and directories 0700 whatever the umask', async () => {
    const old = process.umask(0);
    try {
      const root = path.join(dir, 'modes', 'repo');
      const t = new LocalTarget(root);
      await t.put('packs/ab/abcd.pack', Buffer.from('x'));
      await t.put('packs/ab/abcd.pack', Buffer.from('replaced'));
      await t.put('config', Buffer.from('y'), { ifAbsent: true });
      const mode = async (p: string) => (await fs.stat(p)).mode & 0o777;
      assert.equal(await mode(path.join(root, 'packs', 'ab', 'abcd.pack')), 0o600);
      assert.equal(await mode(path.join(root, 'config')), 0o600);
      assert.equal(await mode(path.join(root, 'packs')), 0o700);
      assert.equal(await mode(path.join(root, 'packs', 'ab')), 0o700);
      assert.equal(await mode(root), 0o700, 'a repository directory created by the first put');
    } finally {
      process.umask(old);
    }
  });

  test('a put interrupted before its rename is invisible and removed by removeLeftovers', async () => {
    const root = path.join(dir, 'interrupted');
    const t = new LocalTarget(root);
    await t.put('packs/ab/keep.pack', Buffer.from('kept'));
    await t.put('config', Buffer.from('cfg'));
    // what a crash between write and rename leaves: temporary files beside the objects
    const leftovers = [path.join(root, 'packs', 'ab', '.tmp-0123456789abcdef'), path.join(root, '.tmp-fedcba9876543210')];
    for (const f of leftovers) await fs.writeFile(f, randomBytes(500), { mode: 0o600 });

    assert.deepEqual(await listKeys(t), ['config', 'packs/ab/keep.pack']);
    assert.deepEqual(await listKeys(t, 'packs/ab/'), ['packs/ab/keep.pack']);
    assert.deepEqual(await listKeys(t, 'packs/ab/.tmp'), []);
    await assert.rejects(t.get('packs/ab/new.pack'), ObjectMissingError);

    assert.equal(await t.removeLeftovers(true), 2, 'dry run counts them');
    for (const f of leftovers) await fs.access(f); // and leaves them
    assert.equal(await t.removeLeftovers(false), 2);
    for (const f of leftovers) await assert.rejects(fs.access(f), { code: 'ENOENT' });
    assert.equal(await t.removeLeftovers(false), 0);
    assert.deepEqual(await t.get('packs/ab/keep.pack'), Buffer.from('kept'));
    assert.deepEqual(await t.get('config'), Buffer.from('cfg'));
  });
});

describe('LocalTarget on a full filesystem', () => {
  let dir: string;
  let mnt: string;
  let mounted = false;

  before(() => {
    dir = execFileSync('mktemp', ['-d', path.join(os.tmpdir(), 'bkp-enospc-XXXXXX')], { encoding: 'utf8' }).trim();
    mnt = path.join(dir, 'mnt');
    const img = path.join(dir, 'fs.img');
    execFileSync('truncate', ['-s', '4M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', img]);
    execFileSync('mkdir', [mnt]);
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    mounted = true;
  });

  after(() => {
    try {
      if (mounted) {
        try {
          execFileSync('umount', [mnt]);
        } catch {
          execFileSync('umount', ['-l', mnt]);
        }
      }
    } finally {
      execFileSync('rm', ['-rf', dir]);
    }
  });

  test('ENOSPC becomes NoSpaceError, leaves no temporary file and keeps earlier objects', async () => {
    const root = path.join(mnt, 'repo');
    const t = new LocalTarget(root);
    const stored = new Map<string, Buffer>();
    let failure: unknown;
    for (let i = 0; i < 100 && failure === undefined; i++) {
      const key = `packs/${String(i).padStart(3, '0')}.pack`;
      const body = randomBytes(256 * 1024);
      try {
        await t.put(key, [body.subarray(0, 1000), body.subarray(1000)]);
        stored.set(key, body);
      } catch (e) {
        failure = e;
      }
    }
    assert.ok(failure !== undefined, 'a 4 MiB filesystem filled up');
    assert.ok(stored.size > 0, 'some puts succeeded before it filled up');
    assert.ok(failure instanceof NoSpaceError, `expected NoSpaceError, got ${String(failure)}`);
    assert.equal(failure.exitCode, ExitCode.NO_SPACE);
    assert.equal(failure.exitCode, 19);
    assert.match(failure.message, /no space/i);

    // an ifAbsent put of a new key fails the same way (not as "exists")
    await assert.rejects(t.put('packs/new.pack', randomBytes(512 * 1024), { ifAbsent: true }), NoSpaceError);

    assert.deepEqual(await tempFiles(root), []);
    assert.equal(await t.removeLeftovers(true), 0);
    assert.deepEqual(await listKeys(t), [...stored.keys()].sort());
    for (const [key, body] of stored) assert.ok((await t.get(key)).equals(body), `${key} intact`);

    // and the repository stays usable once space is freed
    const [first] = stored.keys();
    await t.delete(first!);
    await t.put('after/free', Buffer.from('fits'));
    assert.deepEqual(await t.get('after/free'), Buffer.from('fits'));
  });

  test('a put that needs a new directory on a full filesystem is NoSpaceError, not "repository does not exist"', async () => {
    // Node's recursive mkdir turns ENOSPC into ENOENT; bkp must still say "no space".
    const root = path.join(mnt, 'repo2');
    const t = new LocalTarget(root);
    await t.put('config', Buffer.from('x'));
    let n = 0;
    for (;;) {
      try {
        await fs.mkdir(path.join(mnt, `fill-${n}`)); // a directory takes a whole block: fills blocks and inodes
        n++;
      } catch (e) {
        assert.ok(isSystemError(e, 'ENOSPC'), String(e));
        break;
      }
    }
    await assert.rejects(t.put('packs/zz/new.pack', Buffer.from('data')), (e: unknown) => {
      assert.ok(e instanceof NoSpaceError, `expected NoSpaceError, got ${String(e)}`);
      assert.equal(e.exitCode, ExitCode.NO_SPACE);
      return true;
    });
    for (let i = 0; i < n; i++) await fs.rmdir(path.join(mnt, `fill-${i}`));
  });
});
