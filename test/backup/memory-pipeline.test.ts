/**
 * The backup → restore → verify pipeline as a library, without the CLI, root or devices: image
 * files in a temp directory, the repository in a MemoryTarget. What a user checks: the restored
 * image is byte-identical, an incremental stores only what changed, verify --read-data finds a
 * flipped byte and names the backup, and restore refuses the damaged chunk.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { runBackup } from '../../src/backup/run-backup.js';
import { runRestore } from '../../src/restore/restore.js';
import { runVerify } from '../../src/restore/verify.js';
import { Repository } from '../../src/repo/repository.js';
import { createReporter } from '../../src/report/reporter.js';
import { BkpError } from '../../src/errors.js';
import { MemoryTarget } from '../support/memory-target.js';
import { tempDir } from '../support/env.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

const reporter = createReporter({ quiet: true, tty: false, stream: new Writable({ write: (_c, _e, cb) => cb() }) as unknown as NodeJS.WriteStream });

/** 4 MiB: a pattern, a run of zero chunks, random-looking data that does not compress. */
function image(seed: number): Buffer {
  const b = Buffer.alloc(4 * MiB);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
  b.fill(0, MiB, MiB + 8 * CHUNK);
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('backup and restore pipeline on a memory target (no root, no devices)', () => {
  const tmp = tempDir('bkp-memory-pipeline-');
  const target = new MemoryTarget();
  const disk = path.join(tmp.dir, 'disk.img');

  before(async () => {
    // device locks of this file stay in its own directory (the lock directory is /run/bkp/locks otherwise)
    process.env.BKP_LOCK_DIR = path.join(tmp.dir, 'locks');
    await Repository.init(target, { chunkSize: CHUNK });
    await fs.writeFile(disk, image(1));
  });
  after(() => tmp.cleanup());

  const backup = (kind: 'full' | 'incr') =>
    runBackup({ target, devices: [disk], kind, snapshot: false, diffStorageDir: tmp.dir, diffStorageLimit: 0, reporter });

  const restore = async (backupId: string, to: string) => {
    const refs = await (await Repository.open(target)).listBackups();
    const ref = refs.find((r) => r.backupId === backupId);
    assert.ok(ref, `backup ${backupId} is listed`);
    return runRestore({ repo: await Repository.open(target), ref, to, force: false, reporter });
  };

  test('a full backup restores byte for byte, zero chunks as holes, and verifies', async () => {
    const r = await backup('full');
    const d = r.devices[0]!;
    assert.equal(d.ok, true, d.error);
    assert.equal(d.stats!.chunksZero, 8);
    const keys = [];
    for await (const o of target.list('')) keys.push(o.key);
    assert.ok(keys.includes('config') && keys.some((k) => k.startsWith('packs/')), keys.join(' '));

    const out = path.join(tmp.dir, 'restored-full.img');
    const res = await restore(d.backupId, out);
    assert.equal(res.bytes, 4 * MiB);
    assert.equal(res.zeroBytes, 8 * CHUNK);
    assert.equal(sha(await fs.readFile(out)), sha(image(1)));

    const v = await runVerify({ repo: await Repository.open(target), readData: true, reporter });
    assert.deepEqual(v.backups.map((b) => b.ok), [true]);
    assert.equal(v.chunksChecked, 4 * MiB / CHUNK - 8);
  });

  test('an incremental without a snapshot stores only the chunks that changed, and restores the new content', async () => {
    const changed = await fs.readFile(disk);
    changed.fill(0xab, 2 * MiB, 2 * MiB + 100); // inside one chunk
    await fs.writeFile(disk, changed);
    const r = await backup('incr');
    const d = r.devices[0]!;
    assert.equal(d.ok, true, d.error);
    assert.equal(d.stats!.chunksNew, 1);
    const out = path.join(tmp.dir, 'restored-incr.img');
    await restore(d.backupId, out);
    assert.equal(sha(await fs.readFile(out)), sha(changed));
  });

  test('a flipped byte in a pack: verify --read-data names the pack, restore of a damaged backup refuses', async () => {
    const packs = [];
    for await (const o of target.list('packs/')) packs.push(o.key);
    packs.sort();
    const first = packs[0]!;
    const body = await target.get(first);
    body[200] = body[200]! ^ 0x01; // inside the first envelope
    await target.put(first, body);

    const v = await runVerify({ repo: await Repository.open(target), readData: true, reporter });
    assert.ok(v.backups.some((b) => !b.ok), 'a backup is damaged');
    for (const b of v.backups.filter((x) => !x.ok)) assert.ok(b.problems.length > 0 && b.problems.join(' ').includes(first.split('/').pop()!.slice(0, 8)), b.problems.join('; '));

    const damaged = v.backups.find((b) => !b.ok)!;
    await assert.rejects(restore(damaged.backupId, path.join(tmp.dir, 'refused.img')), (e: unknown) => e instanceof BkpError && /byte/.test(e.message));
  });
});
