import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mulberry32, fuzzSeed } from '../support/random.js';
import {
  decodeIndex,
  encodeIndex,
  INDEX_ENTRY_SIZE,
  maskLength,
  IndexEntries,
  IndexFormatError,
  indexKey,
  parseIndexKey,
  type BackupIndex,
  type IndexHeader,
} from '../../src/repo/index-file.js';

function header(deviceSize: number, chunkSize: number, over: Partial<IndexHeader> = {}): IndexHeader {
  return {
    formatVersion: 2,
    backupId: '20240101T000000Z-0a1b',
    kind: 'full',
    device: { key: 'dev-vdb', path: '/dev/vdb', size: deviceSize, logicalBlockSize: 512, fsType: 'ext4', fsUuid: null },
    time: '2024-01-01T00:00:00.000Z',
    toolVersion: '0.1.0',
    chunkSize,
    pieceSize: chunkSize >= 4 * 1024 ? chunkSize / 4 : chunkSize,
    parent: null,
    snapshot: true,
    cbt: { generationId: 'f00d', snapNumber: 3, blockSize: 65536, blockCount: 16 },
    method: { mode: 'full', reason: null },
    stats: { bytesRead: deviceSize, bytesStored: 1, chunksNew: 1, chunksReused: 0, chunksZero: 0, durationMs: 5 },
    ...over,
  };
}

/**
 * An index whose every entry is right for the device: zero and data bases, patches over both (the
 * piece size is a quarter of the chunk), a partial last region.
 */
function sampleIndex(deviceSize: number, chunkSize: number, packCount = 2): BackupIndex {
  const packs = Array.from({ length: packCount }, () => randomBytes(16).toString('hex'));
  const h = header(deviceSize, chunkSize);
  const n = Math.ceil(deviceSize / chunkSize);
  const t = IndexEntries.alloc(n);
  for (let i = 0; i < n; i++) {
    const regionLength = Math.min(chunkSize, deviceSize - i * chunkSize);
    if (packCount === 0 || i % 3 === 1) t.setZero(i, regionLength);
    else t.setData(i, i % packCount, i * 1000 + 2 ** 33, 56 + (i % 7) * 10, regionLength, randomBytes(32));
    if (packCount > 0 && i % 2 === 0) {
      const mask = 0b1n;
      t.setPatch(i, mask, (i + 1) % packCount, i * 777, 60, maskLength(mask, h.pieceSize, regionLength), randomBytes(32));
    }
  }
  return { header: h, packs, entries: t };
}

/** Replaces the trailing SHA-256 with the right one, so that only the structural damage is wrong. */
function reseal(b: Buffer): Buffer {
  const c = Buffer.from(b);
  createHash('sha256').update(c.subarray(0, c.length - 32)).digest().copy(c, c.length - 32);
  return c;
}

/** Offset of the entry table (after magic, version, flags, header, packs and the entry count). */
function entriesAt(b: Buffer): number {
  const hlen = b.readUInt32LE(8);
  const pcount = b.readUInt32LE(12 + hlen);
  return 12 + hlen + 4 + pcount * 16 + 4;
}


const SEED = fuzzSeed();

/** What any successfully decoded index must satisfy for a restore to be safe. */
function assertConsistent(ix: BackupIndex, what: string): void {
  const { chunkSize, pieceSize, device } = ix.header;
  assert.ok(Number.isSafeInteger(chunkSize) && chunkSize > 0, what);
  assert.ok(chunkSize % pieceSize === 0 && chunkSize / pieceSize <= 64, what);
  const e = ix.entries;
  assert.equal(e.length, Math.ceil(device.size / chunkSize), `${what}: entry count`);
  for (const p of ix.packs) assert.match(p, /^[0-9a-f]{32}$/, what);
  for (let i = 0; i < e.length; i++) {
    const regionLength = Math.min(chunkSize, device.size - i * chunkSize);
    assert.equal(e.regionLength(i), regionLength, `${what}: entry ${i} region length`);
    for (const r of [2 * i, 2 * i + 1]) {
      if (!e.hasRef(r)) continue;
      assert.ok(e.refPack(r) < ix.packs.length, `${what}: ref ${r} pack`);
      // what a restore allocates and where it seeks: bounded
      assert.ok(e.refLength(r) >= 56 && e.refLength(r) <= 56 + 64 * 1024 * 1024 + 1024, `${what}: ref ${r} envelope length`);
      assert.ok(Number.isSafeInteger(e.refOffset(r) + e.refLength(r)), `${what}: ref ${r} envelope offset`);
      assert.equal(e.refPlain(r), r % 2 ? maskLength(e.patchMask(i), pieceSize, regionLength) : regionLength, `${what}: ref ${r} plain length`);
      assert.equal(e.refId(r).length, 32);
    }
    if (e.hasPatch(i)) assert.ok(e.patchMask(i) > 0n && e.patchMask(i) >> BigInt(Math.ceil(regionLength / pieceSize)) === 0n, `${what}: entry ${i} mask`);
    else assert.equal(e.patchMask(i), 0n);
  }
}

describe('backup index', () => {
  describe('round trip', () => {
    const shapes: Array<[string, number, number, number]> = [
      ['a device with a partial last chunk', 10 * 4096 + 123, 4096, 2],
      ['a device of whole chunks', 8 * 4096, 4096, 3],
      ['a device smaller than one chunk', 100, 4 * 1024 * 1024, 1],
      ['an empty device', 0, 4096, 0],
      ['an all-zero device (no packs)', 5 * 4096, 4096, 0],
    ];
    for (const [what, size, chunk, packs] of shapes) {
      test(what, () => {
        const ix = sampleIndex(size, chunk, packs);
        const back = decodeIndex(encodeIndex(ix));
        assert.deepEqual(back, ix);
        assertConsistent(back, what);
      });
    }

    test('a zero base reads as no chunk whatever its unchecked fields hold, and is written back as zeros', () => {
      const ix = sampleIndex(3 * 4096, 4096); // entry 1 is a zero base without patch
      const b = encodeIndex(ix);
      const e1 = entriesAt(b) + INDEX_ENTRY_SIZE;
      b.fill(0xab, e1 + 8, e1 + 24); // base pack ordinal, offset, envelope length
      b.fill(0xcd, e1 + 28, e1 + 60); // base chunk id
      b.fill(0xef, e1 + 60, e1 + 112); // the absent patch's ref
      const given = reseal(b);
      const copy = Buffer.from(given);
      const back = decodeIndex(given);
      assert.deepEqual(given, copy, 'decoding does not change the bytes it was given');
      assert.ok(back.entries.isZero(1) && !back.entries.hasRef(2) && !back.entries.hasRef(3));
      assert.equal(back.entries.ref(2), undefined);
      assert.deepEqual(encodeIndex(back), encodeIndex(ix));
      assert.ok(back.entries.clone().table.equals(ix.entries.table), 'a clone holds zeros there too');
    });

    test('encoding refuses a pack id that is not 32 hex digits', () => {
      const ix = sampleIndex(4096, 4096, 1);
      ix.packs[0] = 'not-hex';
      assert.throws(() => encodeIndex(ix));
    });

    test('an entry table set field by field reads back the same, and a clone is independent', () => {
      const t = IndexEntries.alloc(3);
      t.setData(0, 7, 2 ** 40 + 3, 0xffffffff, 4096, Buffer.alloc(32, 9));
      t.setZero(1, 100);
      t.setData(2, 0, 0, 56, 1, Buffer.alloc(32, 1));
      t.setPatch(2, 0b101n, 3, 2 ** 35, 99, 2, Buffer.alloc(32, 4));
      assert.deepEqual(t.ref(0), { packOrdinal: 7, offset: 2 ** 40 + 3, length: 0xffffffff, plainLength: 4096, id: Buffer.alloc(32, 9) });
      assert.equal(t.ref(1), undefined, 'no patch on region 0');
      assert.ok(t.isZero(1) && t.regionLength(1) === 100);
      assert.deepEqual(t.ref(5), { packOrdinal: 3, offset: 2 ** 35, length: 99, plainLength: 2, id: Buffer.alloc(32, 4) });
      assert.equal(t.patchMask(2), 0b101n);
      assert.ok(t.refIdEquals(4, Buffer.alloc(32, 1)) && !t.refIdEquals(4, Buffer.alloc(32, 2)));
      const c = t.clone();
      c.setZero(0, 4096);
      c.setRefPack(4, 5);
      c.relocate(5, 1, 12, 70);
      assert.ok(t.baseIsData(0));
      assert.equal(t.refPack(4), 0);
      assert.deepEqual(c.ref(5), { packOrdinal: 1, offset: 12, length: 70, plainLength: 2, id: Buffer.alloc(32, 4) });
      // a data region turned into zeros leaves nothing of it behind; setData drops the patch
      const z = IndexEntries.alloc(1);
      z.setZero(0, 4096);
      assert.deepEqual(c.table.subarray(0, INDEX_ENTRY_SIZE), z.table);
      c.setData(2, 0, 0, 56, 1, Buffer.alloc(32, 1));
      assert.ok(!c.hasPatch(2) && c.patchMask(2) === 0n);
    });

    test('indexKey and parseIndexKey round-trip and refuse other keys', () => {
      const key = indexKey('20240101T000000Z-0a1b', 'dev-vdb');
      assert.equal(key, 'backups/20240101T000000Z-0a1b/dev-vdb.idx');
      assert.deepEqual(parseIndexKey(key), { backupId: '20240101T000000Z-0a1b', deviceKey: 'dev-vdb' });
      for (const k of ['backups/x/dev.idx.tmp', 'backups/x/y/dev.idx', 'backups/dev.idx', 'packs/ab/x.pack', 'backups/x/.idx']) {
        assert.equal(parseIndexKey(k), undefined, k);
      }
    });
  });

  describe('damage is refused with IndexFormatError', () => {
    const ix = sampleIndex(3 * 4096 + 10, 4096, 2);
    const good = encodeIndex(ix);

    test('truncation at every length', () => {
      for (let n = 0; n < good.length; n++) {
        assert.throws(() => decodeIndex(good.subarray(0, n)), IndexFormatError, `${n} of ${good.length} bytes`);
      }
      assert.throws(() => decodeIndex(Buffer.concat([good, Buffer.alloc(1)])), IndexFormatError);
    });

    test('every single-bit flip', () => {
      for (let i = 0; i < good.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const b = Buffer.from(good);
          b[i]! ^= 1 << bit;
          assert.throws(() => decodeIndex(b), IndexFormatError, `byte ${i} bit ${bit}`);
        }
      }
    });

    // each of these carries a correct SHA-256: the structure itself must be checked
    const cases: Array<[string, (b: Buffer) => Buffer]> = [
      ['wrong magic', (b) => { b.write('BKPX', 0, 'latin1'); return b; }],
      ['version 0', (b) => { b.writeUInt16LE(0, 4); return b; }],
      ['version 1', (b) => { b.writeUInt16LE(1, 4); return b; }],
      ['version 3', (b) => { b.writeUInt16LE(3, 4); return b; }],
      ['header length past the end', (b) => { b.writeUInt32LE(b.length, 8); return b; }],
      ['header length of 0', (b) => { b.writeUInt32LE(0, 8); return b; }],
      ['header that is not JSON', (b) => { b.write('#', 12, 'latin1'); return b; }],
      ['pack count past the end', (b) => { b.writeUInt32LE(0xffffffff, 12 + b.readUInt32LE(8)); return b; }],
      ['one entry fewer than the device needs', (b) => withEntryCount(b, -1)],
      ['one entry more than the device needs', (b) => withEntryCount(b, +1)],
      ['entry count saying more than the table holds', (b) => { b.writeUInt32LE(b.readUInt32LE(entriesAt(b) - 4) + 1, entriesAt(b) - 4); return b; }],
      ['entry of unknown kind', (b) => { b.writeUInt8(2, entriesAt(b)); return b; }],
      ['entry with an unknown flag', (b) => { b.writeUInt8(2, entriesAt(b) + 1); return b; }],
      ['entry with a non-zero reserved field', (b) => { b.writeUInt8(1, entriesAt(b) + 3); return b; }],
      ['data base naming a pack that is not listed', (b) => { b.writeUInt32LE(2, entriesAt(b) + 8); return b; }],
      ['patch naming a pack that is not listed', (b) => { b.writeUInt32LE(2, entriesAt(b) + 60); return b; }],
      ['entry with the wrong region length', (b) => { b.writeUInt32LE(4095, entriesAt(b) + 4); return b; }],
      ['base with the wrong plain length', (b) => { b.writeUInt32LE(4095, entriesAt(b) + 24); return b; }],
      ['patch with the wrong plain length', (b) => { b.writeUInt32LE(4096, entriesAt(b) + 76); return b; }],
      ['patch mask of no piece', (b) => { b.writeBigUInt64LE(0n, entriesAt(b) + 112); return b; }],
      ['patch mask past the region', (b) => { b.writeBigUInt64LE(1n << 4n, entriesAt(b) + 112); return b; }],
      ['patch mask without a patch', (b) => { b.writeBigUInt64LE(1n, entriesAt(b) + INDEX_ENTRY_SIZE + 112); return b; }],
      ['base envelope shorter than its header', (b) => { b.writeUInt32LE(55, entriesAt(b) + 20); return b; }],
      ['last entry with a full region length on a partial region', (b) => { b.writeUInt32LE(4096, entriesAt(b) + 3 * INDEX_ENTRY_SIZE + 4); return b; }],
    ];
    for (const [what, damage] of cases) {
      test(`${what} (with a correct checksum)`, () => {
        assert.throws(() => decodeIndex(reseal(damage(Buffer.from(good)))), IndexFormatError);
      });
    }

    test('nonzero flags (with a correct checksum): v1 defines none', () => {
      for (const flags of [1, 0x8000]) {
        const b = Buffer.from(good);
        b.writeUInt16LE(flags, 6);
        assert.throws(() => decodeIndex(reseal(b)), IndexFormatError, `flags 0x${flags.toString(16)}`);
      }
    });

    const badHeaders: Array<[string, Partial<IndexHeader> | ((h: IndexHeader) => unknown)]> = [
      ['entry count that disagrees with a larger device size', { device: { ...ix.header.device, size: ix.header.device.size + 4096 } }],
      ['entry count that disagrees with a smaller device size', { device: { ...ix.header.device, size: 4096 } }],
      ['entry count that disagrees with the chunk size', { chunkSize: 2048 }],
      ['chunk size 0', { chunkSize: 0 }],
      ['negative chunk size', { chunkSize: -4096 }],
      ['chunk size over 64 MiB', { chunkSize: 128 * 1024 * 1024 }],
      ['fractional device size', { device: { ...ix.header.device, size: 12298.5 } }],
      ['negative device size', { device: { ...ix.header.device, size: -1 } }],
      ['device size as a string', (h) => ({ ...h, device: { ...h.device, size: String(h.device.size) } })],
      ['format version 1 in the header', (h) => ({ ...h, formatVersion: 1 })],
      ['no piece size', (h) => ({ ...h, pieceSize: undefined })],
      ['piece size that does not divide the chunk size', { pieceSize: 3000 }],
      ['more than 64 pieces per region', { pieceSize: 32 }],
      ['no device', (h) => ({ ...h, device: undefined })],
      ['no backup id', (h) => ({ ...h, backupId: 7 })],
      ['header null', () => null],
      ['header an array', () => []],
      ['header a string', () => 'index'],
    ];
    for (const [what, change] of badHeaders) {
      test(`${what} (with a correct checksum)`, () => {
        const h: unknown = typeof change === 'function' ? change(structuredClone(ix.header)) : { ...ix.header, ...change };
        assert.throws(() => decodeIndex(withHeader(good, h)), IndexFormatError);
      });
    }
  });

  test(`fuzz: 2000 mutated or random inputs decode consistently or throw IndexFormatError (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, { timeout: 20_000 }, () => {
    const rnd = mulberry32(SEED);
    const int = (k: number) => Math.floor(rnd() * k);
    const bytes = (k: number) => Buffer.from(Array.from({ length: k }, () => int(256)));
    const samples = [encodeIndex(sampleIndex(3 * 4096 + 10, 4096, 2)), encodeIndex(sampleIndex(0, 512, 0)), encodeIndex(sampleIndex(2 * 512, 512, 1))];
    let decoded = 0;
    for (let iter = 0; iter < 2000; iter++) {
      let b: Buffer;
      const mode = int(10);
      if (mode === 0) b = bytes(int(300));
      else if (mode === 1) {
        b = Buffer.concat([Buffer.from('BKPI\x02\x00\x00\x00', 'latin1'), bytes(int(300)), Buffer.alloc(32)]);
        b = reseal(b);
      } else {
        b = Buffer.from(samples[int(samples.length)]!);
        const at = int(3) === 0 ? entriesAt(b) : 0; // aim some mutations at the entry table
        for (let m = 1 + int(3); m > 0 && b.length > 0; m--) {
          const r = int(5);
          const pos = Math.min(b.length - 1, at + int(b.length - at));
          if (r === 0) b[pos]! ^= 1 << int(8);
          else if (r === 1) b[pos] = int(256);
          else if (r === 2 && pos + 4 <= b.length) b.writeUInt32LE([0, 1, 2, 0xffffffff, int(2 ** 32)][int(5)]! >>> 0, pos);
          else if (r === 3) b = b.subarray(0, int(b.length));
          else b = Buffer.concat([b.subarray(0, pos), bytes(int(60)), b.subarray(pos)]);
        }
        if (rnd() < 0.7 && b.length >= 32) b = reseal(b);
      }
      let got: BackupIndex;
      try {
        got = decodeIndex(b);
      } catch (e) {
        assert.ok(e instanceof IndexFormatError, `iteration ${iter}: ${String(e)} for ${b.toString('hex')}`);
        continue;
      }
      decoded++;
      assertConsistent(got, `iteration ${iter}`);
    }
    assert.ok(decoded > 0, 'some inputs decoded (the fuzz reached past the checks)');
  });
});

/** The index with its entry count field changed by delta and the table grown or shrunk to match. */
function withEntryCount(b: Buffer, delta: number): Buffer {
  const at = entriesAt(b);
  const n = b.readUInt32LE(at - 4);
  const table = b.subarray(at, b.length - 32);
  const newTable = delta < 0 ? table.subarray(0, (n + delta) * INDEX_ENTRY_SIZE) : Buffer.concat([table, table.subarray(-INDEX_ENTRY_SIZE)]);
  const out = Buffer.concat([b.subarray(0, at), newTable, Buffer.alloc(32)]);
  out.writeUInt32LE(n + delta, at - 4);
  return out;
}

/** The index with its JSON header replaced, lengths fixed and checksum resealed. */
function withHeader(b: Buffer, h: unknown): Buffer {
  const hlen = b.readUInt32LE(8);
  const json = Buffer.from(JSON.stringify(h) ?? 'undefined', 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return reseal(Buffer.concat([b.subarray(0, 8), len, json, b.subarray(12 + hlen)]));
}

test(`maskLength agrees with counting piece by piece (seed ${SEED})`, () => {
  const rnd = mulberry32(SEED ^ 0x6d61736b);
  const slow = (mask: bigint, piece: number, len: number) => {
    let n = 0;
    for (let p = 0; p < 64; p++) if ((mask >> BigInt(p)) & 1n) n += Math.max(0, Math.min(piece, len - p * piece));
    return n;
  };
  for (let k = 0; k < 5000; k++) {
    const piece = [512, 4096, 65536][Math.floor(rnd() * 3)]!;
    const pieces = 1 + Math.floor(rnd() * 64);
    const len = (pieces - 1) * piece + 1 + Math.floor(rnd() * piece);
    let mask = 0n;
    for (let p = 0; p < pieces; p++) if (rnd() < 0.3) mask |= 1n << BigInt(p);
    assert.equal(maskLength(mask, piece, len), slow(mask, piece, len), `${mask.toString(16)} ${piece} ${len}`);
  }
});
