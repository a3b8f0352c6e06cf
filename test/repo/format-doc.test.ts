/**
 * docs/format.md is enough to restore: back up an image with the real CLI, restore it with
 * tools/bkp-restore-by-hand.py (written only from the document), and compare the bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeIndex, INDEX_ENTRY_SIZE } from '../../src/repo/index-file.js';
import { refsOf } from '../support/index-refs.js';
import { deviceKeyOf, newBackupId } from '../../src/repo/repository.js';
import { ENVELOPE_HEADER_SIZE } from '../../src/repo/envelope.js';
import { packKey } from '../../src/repo/pack.js';
import { BKP, ROOT } from '../support/env.js';

const TOOL = path.join(ROOT, 'tools', 'bkp-restore-by-hand.py');
const DOC = readFileSync(path.join(ROOT, 'docs', 'format.md'), 'utf8');
const KiB = 1024;
/** Regions of four 64 KiB pieces: incrementals store patches. */
const CHUNK = 256 * KiB;
const PIECE = 64 * KiB;

const hasPython = spawnSync('python3', ['--version']).status === 0;

function bkp(args: string[]): string {
  return execFileSync(process.execPath, [BKP, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function byHand(repo: string, backupId: string, deviceKey: string, out: string) {
  return spawnSync('python3', [TOOL, repo, backupId, deviceKey, out], { encoding: 'utf8' });
}

/** The backup id pattern stated in section 3 of the document. */
const BACKUP_ID_RE = new RegExp(`^${/\(it matches `([^`]+)`\)/.exec(DOC)![1]!}$`);

/** Rewrites an index file in place after `edit`, with a valid SHA-256, so that only the edit is wrong. */
function tamperIndex(file: string, edit: (b: Buffer) => void): void {
  const b = readFileSync(file);
  edit(b);
  createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
  writeFileSync(file, b);
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Repetitive text, compressible by zstd. */
function text(n: number, seed: number): Buffer {
  const line = `bkp format test line ${seed}: the quick brown fox jumps over the lazy dog\n`;
  return Buffer.from(line.repeat(Math.ceil(n / line.length))).subarray(0, n);
}

/** A few MiB: zeros, random, text, a text chunk repeated at chunk boundaries (dedup), then `tail`. */
function makeImage(file: string, tail: Buffer): number {
  const same = text(CHUNK, 7);
  const parts = [
    Buffer.alloc(512 * KiB),
    randomBytes(700 * KiB),
    text(300 * KiB + 123, 1),
    Buffer.alloc(CHUNK * 3),
  ];
  const used = parts.reduce((n, p) => n + p.length, 0);
  parts.push(randomBytes(CHUNK - (used % CHUNK))); // realign so the repeated chunks are whole chunks
  for (let i = 0; i < 6; i++) parts.push(same);
  parts.push(randomBytes(256 * KiB), text(512 * KiB, 2), tail);
  const img = Buffer.concat(parts);
  writeFileSync(file, img);
  return img.length;
}

function backup(repo: string, img: string, kind: 'full' | 'incr' = 'full'): { backupId: string; deviceKey: string; stats: Record<string, number> } {
  const r = JSON.parse(bkp([kind, '--device', img, '--repo', repo, '--no-snapshot', '--json'])) as {
    devices: { backupId: string; deviceKey: string; ok: boolean; stats: Record<string, number> }[];
  };
  assert.equal(r.devices.length, 1);
  assert.ok(r.devices[0]!.ok, 'backup succeeded');
  return r.devices[0]!;
}

test('a backup restored with only docs/format.md (tools/bkp-restore-by-hand.py) is byte-identical', { skip: !hasPython && 'python3 not found' }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bkp-format-doc-'));
  try {
    const repo = path.join(dir, 'R');
    const img = path.join(dir, 'disk.img');
    const size = makeImage(img, randomBytes(12345)); // last chunk short, not zero
    assert.notEqual(size % CHUNK, 0);
    bkp(['init', '--repo', repo, '--chunk-size', '256K']);
    const b = backup(repo, img);
    assert.ok(b.stats['chunksZero']! > 0 && b.stats['chunksReused']! > 0 && b.stats['chunksNew']! > 0, JSON.stringify(b.stats));

    // the backup exercises every case the document describes: zero, raw and zstd chunks, a short last chunk
    const index = decodeIndex(readFileSync(path.join(repo, 'backups', b.backupId, `${b.deviceKey}.idx`)));
    const data = refsOf(index);
    assert.ok(Array.from({ length: index.entries.length }, (_, i) => i).some((i) => index.entries.isZero(i)));
    assert.ok(data.some((e) => e.length < e.plainLength), 'some chunk is compressed');
    assert.ok(data.some((e) => e.length === e.plainLength + ENVELOPE_HEADER_SIZE), 'some chunk is stored raw');
    assert.equal(index.entries.regionLength(index.entries.length - 1), size % CHUNK);

    const out = path.join(dir, 'restored.img');
    const r = byHand(repo, b.backupId, b.deviceKey, out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(out).size, size);
    assert.equal(sha256(out), sha256(img));

    // and it checks what the document says to check: one flipped payload byte is refused
    const victim = data.find((e) => e.length > ENVELOPE_HEADER_SIZE + 100)!;
    const pack = path.join(repo, packKey(victim.packId));
    const fd = openSync(pack, 'r+');
    try {
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, victim.offset + ENVELOPE_HEADER_SIZE + 50);
      byte[0] = byte[0]! ^ 0xff;
      writeSync(fd, byte, 0, 1, victim.offset + ENVELOPE_HEADER_SIZE + 50);
    } finally {
      closeSync(fd);
    }
    const bad = byHand(repo, b.backupId, b.deviceKey, path.join(dir, 'bad.img'));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /CRC-32/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a second backup (chunks deduplicated against the first) with a zero last region, then an incremental of patches, restore by hand', { skip: !hasPython && 'python3 not found' }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bkp-format-doc-'));
  try {
    const repo = path.join(dir, 'R');
    const img = path.join(dir, 'disk.img');
    const size = makeImage(img, Buffer.alloc(1000)); // last chunk short and all zero
    bkp(['init', '--repo', repo, '--chunk-size', '256K']);
    const first = backup(repo, img);
    // change one chunk in the middle; everything else is found already stored
    const fd = openSync(img, 'r+');
    try {
      writeSync(fd, randomBytes(CHUNK), 0, CHUNK, CHUNK * 5);
    } finally {
      closeSync(fd);
    }
    const second = backup(repo, img);
    assert.notEqual(second.backupId, first.backupId);
    assert.equal(second.stats['chunksNew'], 1);

    // what sections 3, 8 and 11 say about the second backup
    for (const b of [first, second]) assert.match(b.backupId, BACKUP_ID_RE);
    assert.equal(second.deviceKey, deviceKeyOf(img));
    const idxFile = path.join(repo, 'backups', second.backupId, `${second.deviceKey}.idx`);
    const index = decodeIndex(readFileSync(idxFile));
    assert.equal(index.header.kind, 'full');
    assert.equal(index.header.parent, null, 'a full records no parent');
    assert.equal(index.header.device.path, img);
    const used = refsOf(index).map((e) => index.packs.indexOf(e.packId));
    assert.deepEqual([...new Set(used)], index.packs.map((_, k) => k), 'the pack table lists exactly the packs used, in order of first use');
    const gens = readdirSync(path.join(repo, 'locks')).sort();
    assert.ok(gens.length === 2 && gens.every((g) => /^[0-9]{12}$/.test(g)), gens.join(' '));
    assert.equal((JSON.parse(readFileSync(path.join(repo, 'locks', gens[1]!), 'utf8')) as { state: string }).state, 'released');

    // the tool derives the key from the device path as section 3 says
    const out = path.join(dir, 'restored.img');
    const r = byHand(repo, second.backupId, img, out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(out).size, size);
    assert.equal(sha256(out), sha256(img));

    // a few pieces change, in two regions and across a region boundary: the incremental (the
    // digest fallback, no snapshot) stores patches, and the tool lays them over their bases
    const fd2 = openSync(img, 'r+');
    try {
      writeSync(fd2, randomBytes(4 * KiB), 0, 4 * KiB, CHUNK * 9 + PIECE + 100);
      writeSync(fd2, randomBytes(8 * KiB), 0, 8 * KiB, CHUNK * 12 - 4 * KiB);
    } finally {
      closeSync(fd2);
    }
    const third = backup(repo, img, 'incr');
    const incIndex = decodeIndex(readFileSync(path.join(repo, 'backups', third.backupId, `${third.deviceKey}.idx`)));
    assert.deepEqual([9, 11, 12].map((i) => incIndex.entries.patchMask(i)), [0b10n, 0b1000n, 0b1n], 'three patches of one piece each');
    assert.equal(third.stats['bytesStored']! < 4 * PIECE, true, `stored ${third.stats['bytesStored']} bytes`);
    const out3 = path.join(dir, 'restored-3.img');
    const r3 = byHand(repo, third.backupId, third.deviceKey, out3);
    assert.equal(r3.status, 0, r3.stderr);
    assert.equal(sha256(out3), sha256(img));

    // index flags and entry reserved bytes must be 0: bkp and the tool both refuse otherwise
    const raw = readFileSync(idxFile);
    const firstEntry = 20 + raw.readUInt32LE(8) + 16 * index.packs.length;
    const cases: [string, (b: Buffer) => void][] = [
      ['flags', (b) => b.writeUInt16LE(1, 6)],
      ['entry reserved byte', (b) => (b[firstEntry + 5 * INDEX_ENTRY_SIZE + 2] = 1)],
    ];
    for (const [what, edit] of cases) {
      writeFileSync(idxFile, raw);
      tamperIndex(idxFile, edit);
      assert.throws(() => decodeIndex(readFileSync(idxFile)), /flags|reserved/, `bkp refuses non-zero ${what}`);
      const bad = byHand(repo, second.backupId, second.deviceKey, path.join(dir, `bad-${what}.img`));
      assert.notEqual(bad.status, 0, `the tool refuses non-zero ${what}`);
      assert.match(bad.stderr, /flags|entry 5 is invalid/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the names in the document are those the code makes: device keys and backup ids', () => {
  // the example table of section 3
  const table = DOC.slice(DOC.indexOf('| path '), DOC.indexOf('\n\n', DOC.indexOf('| path ')));
  const rows = [...table.matchAll(/^\| `([^`]+)`(?: \/ `([^`]+)`)?\s*\| `([^`]+)`(?: \/ `([^`]+)`)?\s*\|$/gm)];
  const pairs: [string, string][] = [];
  for (const m of rows) {
    pairs.push([m[1]!, m[3]!]);
    if (m[2] !== undefined) pairs.push([m[2], m[4]!]);
  }
  assert.ok(pairs.length >= 6, `found the example table (${pairs.length} rows)`);
  pairs.push(['/', '_'], ['/root', 'root'], ['/' + 'x'.repeat(300), 'x'.repeat(160) + '~' + createHash('sha256').update('/' + 'x'.repeat(300)).digest('hex').slice(0, 32)], ['/a b/_x', 'a_20b-_5fx'], ['/dev//./sdb/../sdc', 'dev-sdc']);
  for (const [p, key] of pairs) {
    assert.equal(deviceKeyOf(p), key, p);
    if (hasPython) assert.equal(spawnSync('python3', [TOOL, '--device-key', p], { encoding: 'utf8' }).stdout.trim(), key, `${p} (by hand)`);
  }
  assert.match(newBackupId(), BACKUP_ID_RE);
  assert.match(newBackupId(new Date('2026-11-25T14:27:39.301Z')), /^20261125T142739\.301Z-[0-9a-f]{6}$/);
});
