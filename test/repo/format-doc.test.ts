/**
 * docs/format.md is enough to restore: back up an image with the real CLI, restore it with
 * tools/bkp-restore-by-hand.py (written only from the document), and compare the bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeIndex, ENTRY_DATA, ENTRY_ZERO } from '../../src/repo/index-file.js';
import { ENVELOPE_HEADER_SIZE } from '../../src/repo/envelope.js';
import { packKey } from '../../src/repo/pack.js';

// dist/test/repo/format-doc.test.js → the package root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BKP = path.join(ROOT, 'bin', 'bkp.js');
const TOOL = path.join(ROOT, 'tools', 'bkp-restore-by-hand.py');
const KiB = 1024;
const CHUNK = 64 * KiB;

const hasPython = spawnSync('python3', ['--version']).status === 0;

function bkp(args: string[]): string {
  return execFileSync(process.execPath, [BKP, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function byHand(repo: string, backupId: string, deviceKey: string, out: string) {
  return spawnSync('python3', [TOOL, repo, backupId, deviceKey, out], { encoding: 'utf8' });
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

function backup(repo: string, img: string): { backupId: string; deviceKey: string; stats: Record<string, number> } {
  const r = JSON.parse(bkp(['full', '--device', img, '--repo', repo, '--no-snapshot', '--json'])) as {
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
    bkp(['init', '--repo', repo, '--chunk-size', '64K']);
    const b = backup(repo, img);
    assert.ok(b.stats['chunksZero']! > 0 && b.stats['chunksReused']! > 0 && b.stats['chunksNew']! > 0, JSON.stringify(b.stats));

    // the backup exercises every case the document describes: zero, raw and zstd chunks, a short last chunk
    const index = decodeIndex(readFileSync(path.join(repo, 'backups', b.backupId, `${b.deviceKey}.idx`)));
    const data = index.entries.filter((e) => e.kind === ENTRY_DATA);
    assert.ok(index.entries.some((e) => e.kind === ENTRY_ZERO));
    assert.ok(data.some((e) => e.length < e.plainLength), 'some chunk is compressed');
    assert.ok(data.some((e) => e.length === e.plainLength + ENVELOPE_HEADER_SIZE), 'some chunk is stored raw');
    assert.equal(index.entries[index.entries.length - 1]!.plainLength, size % CHUNK);

    const out = path.join(dir, 'restored.img');
    const r = byHand(repo, b.backupId, b.deviceKey, out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(out).size, size);
    assert.equal(sha256(out), sha256(img));

    // and it checks what the document says to check: one flipped payload byte is refused
    const victim = data.find((e) => e.length > ENVELOPE_HEADER_SIZE + 100)!;
    const pack = path.join(repo, packKey(index.packs[victim.packOrdinal]!));
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

test('a second backup (chunks deduplicated against the first) with a zero last chunk restores by hand', { skip: !hasPython && 'python3 not found' }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bkp-format-doc-'));
  try {
    const repo = path.join(dir, 'R');
    const img = path.join(dir, 'disk.img');
    const size = makeImage(img, Buffer.alloc(1000)); // last chunk short and all zero
    bkp(['init', '--repo', repo, '--chunk-size', '64K']);
    const first = backup(repo, img);
    // change one chunk in the middle; everything else is found already stored
    const fd = openSync(img, 'r+');
    try {
      writeSync(fd, randomBytes(CHUNK), 0, CHUNK, CHUNK * 20);
    } finally {
      closeSync(fd);
    }
    const second = backup(repo, img);
    assert.notEqual(second.backupId, first.backupId);
    assert.equal(second.stats['chunksNew'], 1);

    const out = path.join(dir, 'restored.img');
    const r = byHand(repo, second.backupId, second.deviceKey, out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(out).size, size);
    assert.equal(sha256(out), sha256(img));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
