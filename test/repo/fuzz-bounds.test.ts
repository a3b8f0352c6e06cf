/**
 * The parsers' limits, beyond the per-format fuzz tests (index-file, pack, envelope): a length or
 * count field claiming gigabytes is refused before anything is allocated, and damaged chunks that
 * pass the envelope's CRC (a resealed payload) reach zstd in the workers and come back as an
 * error string, never a crash of the worker or the process. BKP_FUZZ_SEED replays the random part.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { createRequire } from 'node:module';
import { mulberry32, fuzzSeed } from '../support/random.js';
import { tempDir } from '../support/env.js';
import { decodeIndex, encodeIndex, IndexEntries, IndexFormatError, type BackupIndex } from '../../src/repo/index-file.js';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, openEnvelope, EnvelopeError, ENVELOPE_HEADER_SIZE, FLAG_ZSTD } from '../../src/repo/envelope.js';
import { decodePackEntries, decodePackFooter, encodePackTrailer, PackFormatError, PACK_ENTRY_SIZE, PACK_FOOTER_SIZE } from '../../src/repo/pack.js';
import { CodecPool, SharedReads } from '../../src/repo/codec-pool.js';
import { LocalTarget } from '../../src/storage/local/local-target.js';
import { Repository } from '../../src/repo/repository.js';
import { CorruptError } from '../../src/errors.js';

const SEED = fuzzSeed();
const zstd = createRequire(import.meta.url)('zstd-napi/binding') as { compressBound(n: number): number; CCtx: new () => { compress(dst: Buffer, src: Buffer, level: number): number } };

function sampleIndex(): BackupIndex {
  const chunkSize = 4096;
  const size = 4 * chunkSize;
  return {
    header: {
      formatVersion: 2,
      backupId: '20260101T000000.000Z-abcdef',
      kind: 'full',
      device: { key: 'dev-x', path: '/dev/x', size, logicalBlockSize: 512, fsType: null, fsUuid: null },
      time: '2026-01-01T00:00:00.000Z',
      toolVersion: '0.1.0',
      chunkSize,
      pieceSize: chunkSize / 4,
      parent: null,
      snapshot: false,
      cbt: null,
      method: { mode: 'full', reason: null },
      stats: { bytesRead: size, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0, durationMs: 0 },
    },
    packs: ['0123456789abcdef0123456789abcdef'],
    entries: (() => {
      const t = IndexEntries.alloc(4);
      for (let i = 0; i < 4; i++) t.setData(i, 0, i * 200, 100, chunkSize, Buffer.alloc(32, i + 1));
      t.setPatch(0, 1n, 0, 900, 100, chunkSize / 4, Buffer.alloc(32, 9));
      return t;
    })(),
  };
}

function reseal(b: Buffer): Buffer {
  createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
  return b;
}

test('length and count fields claiming gigabytes are refused before anything is allocated', () => {
  const good = encodeIndex(sampleIndex());
  const hlen = good.readUInt32LE(8);
  const packsAt = 12 + hlen;
  const entriesAt = packsAt + 4 + 16 + 4;
  const indexCases: Array<[string, (b: Buffer) => void]> = [
    ['header length 2^32-1', (b) => b.writeUInt32LE(0xffffffff, 8)],
    ['pack count 2^32-1', (b) => b.writeUInt32LE(0xffffffff, packsAt)],
    ['entry count 2^32-1', (b) => b.writeUInt32LE(0xffffffff, packsAt + 4 + 16)],
    ['envelope length 2^32-1', (b) => b.writeUInt32LE(0xffffffff, entriesAt + 20)],
    ['envelope length 0', (b) => b.writeUInt32LE(0, entriesAt + 20)],
    ['envelope offset 2^40 · 2^20', (b) => b.writeBigUInt64LE(2n ** 60n, entriesAt + 12)],
    ['envelope offset 2^64-1', (b) => b.writeBigUInt64LE(2n ** 64n - 1n, entriesAt + 12)],
    ['patch envelope length 2^32-1', (b) => b.writeUInt32LE(0xffffffff, entriesAt + 72)],
    ['patch envelope offset 2^64-1', (b) => b.writeBigUInt64LE(2n ** 64n - 1n, entriesAt + 64)],
  ];
  const before = process.memoryUsage().arrayBuffers;
  for (const [what, damage] of indexCases) {
    const b = Buffer.from(good);
    damage(b);
    assert.throws(() => decodeIndex(reseal(b)), IndexFormatError, what);
  }
  assert.doesNotThrow(() => decodeIndex(reseal(Buffer.from(good))), 'the undamaged sample decodes');

  const env = Buffer.concat([encodeEnvelopeHeader(Buffer.alloc(32), 0, 5, Buffer.from('hello')), Buffer.from('hello')]);
  for (const [what, at] of [['plain length', 8], ['payload length', 12]] as const) {
    const b = Buffer.from(env);
    b.writeUInt32LE(0xffffffff, at);
    assert.throws(() => decodeEnvelopeHeader(b), EnvelopeError, `envelope ${what} 2^32-1`);
    assert.throws(() => openEnvelope(b), EnvelopeError, `envelope ${what} 2^32-1`);
  }

  // a footer claiming 2^32-1 entries in a pack of a few hundred bytes: refused from the footer alone
  const trailer = encodePackTrailer([{ id: Buffer.alloc(32), offset: 0, length: env.length, plainLength: 5 }]);
  const pack = Buffer.concat([env, trailer]);
  pack.writeUInt32LE(0xffffffff, pack.length - PACK_FOOTER_SIZE);
  assert.throws(() => decodePackFooter(pack.subarray(pack.length - PACK_FOOTER_SIZE), pack.length), PackFormatError);
  const footer = decodePackFooter(pack.subarray(pack.length - PACK_FOOTER_SIZE));
  assert.throws(() => decodePackEntries(pack.subarray(pack.length - PACK_FOOTER_SIZE - PACK_ENTRY_SIZE, pack.length - PACK_FOOTER_SIZE), footer, pack.length), PackFormatError);

  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'no large buffer was allocated');
});

test('an index whose header length claims 4 GiB: the listing reports it damaged without allocating it', async () => {
  const t = tempDir();
  try {
    const target = new LocalTarget(path.join(t.dir, 'repo'));
    const repo = await Repository.init(target);
    const b = encodeIndex(sampleIndex());
    b.writeUInt32LE(0xfffffff0, 8);
    await target.put('backups/20260101T000000.000Z-abcdef/dev-x.idx', b);
    const [ref] = await repo.listBackups();
    const before = process.memoryUsage().arrayBuffers;
    await assert.rejects(repo.readIndexHeader(ref!), CorruptError);
    await assert.rejects(repo.readIndex(ref!), CorruptError);
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'no large buffer was allocated');
  } finally {
    t.cleanup();
  }
});

test(`fuzz: 400 damaged chunks with a valid CRC go through zstd in the workers and come back as errors (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, { timeout: 60_000 }, async () => {
  const rnd = mulberry32(SEED);
  const int = (k: number) => Math.floor(rnd() * k);
  const CHUNK = 64 * 1024;
  const cctx = new zstd.CCtx();
  // compressible plaintexts, so that the payloads are real zstd frames
  const plains = Array.from({ length: 4 }, (_, k) => Buffer.from(Array.from({ length: CHUNK }, (_, i) => (i % (17 + k) < 5 ? i & 0xff : 0x41 + k))));
  const seeds = plains.map((plain) => {
    const scratch = Buffer.alloc(zstd.compressBound(plain.length));
    const payload = Buffer.from(scratch.subarray(0, cctx.compress(scratch, plain, 3)));
    const id = createHash('sha256').update(plain).digest();
    return { plain, id, payload };
  });
  const pool = new CodecPool(2);
  let destBuf = new ArrayBuffer(CHUNK);
  const counts = { error: 0, intact: 0 };
  try {
    for (let iter = 0; iter < 400; iter++) {
      const s = seeds[int(seeds.length)]!;
      let payload = Buffer.from(s.payload);
      for (let m = 1 + int(3); m > 0; m--) {
        const r = int(5);
        if (r === 0) payload[int(payload.length)]! ^= 1 << int(8);
        else if (r === 1) payload[int(payload.length)] = int(256);
        else if (r === 2) payload = payload.subarray(0, int(payload.length));
        else if (r === 3) payload = Buffer.concat([payload, Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)))]);
        else if (payload.length >= 8) payload.writeUInt32LE(int(2 ** 32) >>> 0, int(payload.length - 3)); // frame header fields: content size, window
      }
      // the CRC is made right again: only the decompression and the SHA-256 can catch the damage
      const header = encodeEnvelopeHeader(s.id, FLAG_ZSTD, CHUNK, payload);
      assert.equal(header.readUInt32LE(16), crc32(payload, crc32(header.subarray(20, ENVELOPE_HEADER_SIZE), crc32(header.subarray(0, 16)))));
      const env = Buffer.concat([header, payload]);
      // the envelope at an offset inside a larger read, as a restore hands it over
      const source = new SharedReads(1).share(Buffer.concat([Buffer.alloc(7, 0xee), env, Buffer.alloc(5, 0xee)]));
      const r = await pool.open(source, 7, env.length, destBuf, 0, s.id, CHUNK);
      destBuf = r.dest;
      if (r.error === undefined) {
        assert.ok(Buffer.from(r.dest, 0, CHUNK).equals(s.plain), `iteration ${iter}: accepted, so it must be the chunk`);
        counts.intact++;
      } else {
        assert.equal(typeof r.error, 'string');
        counts.error++;
      }
    }
  } finally {
    await pool.close();
  }
  assert.ok(counts.error > 300, `damaged chunks were refused (${JSON.stringify(counts)})`);
});

test(`fuzz: 300 indexes with bits flipped in the header (checksum resealed or not) are read, listed or refused as damaged, never an internal error (seed ${SEED})`, async () => {
  const rnd = mulberry32(SEED ^ 0x5eed);
  const int = (k: number) => Math.floor(rnd() * k);
  const t = tempDir();
  try {
    const target = new LocalTarget(path.join(t.dir, 'repo'));
    const repo = await Repository.init(target);
    const good = encodeIndex(sampleIndex());
    const hlen = good.readUInt32LE(8);
    const key = 'backups/20260101T000000.000Z-abcdef/dev-x.idx';
    const counts = { read: 0, damaged: 0, listed: 0, listDamaged: 0 };
    for (let iter = 0; iter < 300; iter++) {
      const b = Buffer.from(good);
      for (let m = 1 + int(2); m > 0; m--) b[12 + int(hlen)]! ^= 1 << int(8);
      if (int(2) === 0) reseal(b); // a header that passes the checksum: only the field checks catch it
      await target.put(key, b);
      const [ref] = await repo.listBackups();
      try {
        const h = await repo.readIndexHeader(ref!);
        // what a listing shows is there, of the right type, and names this very index
        assert.equal(typeof h.device.path, 'string');
        assert.equal(typeof h.stats.bytesStored, 'number');
        assert.equal(h.backupId, ref!.backupId);
        assert.equal(h.device.key, ref!.deviceKey);
        counts.listed++;
      } catch (e) {
        assert.ok(e instanceof CorruptError, `iteration ${iter}: ${String(e)}`);
        assert.match(e.message, new RegExp(`^index ${key} is damaged: `));
        counts.listDamaged++;
      }
      try {
        const idx = await repo.readIndex(ref!);
        assert.equal(idx.header.backupId, ref!.backupId, `iteration ${iter}: an accepted index names its own backup`);
        assert.equal(idx.header.device.key, ref!.deviceKey);
        counts.read++;
      } catch (e) {
        assert.ok(e instanceof CorruptError, `iteration ${iter}: ${String(e)}`);
        counts.damaged++;
      }
    }
    assert.ok(counts.damaged > 200 && counts.listDamaged > 100, JSON.stringify(counts));
  } finally {
    t.cleanup();
  }
});
