import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ChunkMap, type ChunkLocation } from '../../src/repo/chunk-map.js';
import { IndexEntries } from '../../src/repo/index-file.js';

function id(n: number | string): Buffer {
  return createHash('sha256').update(`chunk ${n}`).digest();
}

/** A location recorded as bkp records them: as the entry of an index table (here one of its own). */
function addLoc(m: ChunkMap, id: Uint8Array, loc: ChunkLocation): void {
  const entries = IndexEntries.alloc(1);
  entries.setData(0, 0, loc.offset, loc.length, 0, id);
  m.addRef({ entries, packs: [loc.packId] }, 0);
}

const PACK_A = 'a'.repeat(32);
const PACK_B = 'b'.repeat(32);

describe('ChunkMap', () => {
  test('an empty map knows nothing', () => {
    const m = new ChunkMap();
    assert.equal(m.size, 0);
    assert.equal(m.get(id(1)), undefined);
    assert.equal(m.has(id(1)), false);
    assert.equal(m.has(Buffer.alloc(32)), false);
  });

  test('add then get and has return the location', () => {
    const m = new ChunkMap();
    const loc: ChunkLocation = { packId: PACK_A, offset: 123_456, length: 4_194_360 };
    addLoc(m, id(1), loc);
    assert.equal(m.size, 1);
    assert.deepEqual(m.get(id(1)), loc);
    assert.equal(m.has(id(1)), true);
    assert.equal(m.has(id(2)), false);
    assert.equal(m.get(id(2)), undefined);
  });

  test('offsets past 4 GiB and the largest u32 length survive', () => {
    const m = new ChunkMap();
    const loc = { packId: PACK_A, offset: 5 * 2 ** 40 + 7, length: 0xffffffff };
    addLoc(m, id('big'), loc);
    addLoc(m, id('zero'), { packId: PACK_A, offset: 0, length: 0 });
    assert.deepEqual(m.get(id('big')), loc);
    assert.deepEqual(m.get(id('zero')), { packId: PACK_A, offset: 0, length: 0 });
  });

  test('the first location of a chunk wins', () => {
    const m = new ChunkMap();
    addLoc(m, id(1), { packId: PACK_A, offset: 10, length: 20 });
    addLoc(m, id(1), { packId: PACK_B, offset: 30, length: 40 });
    addLoc(m, id(1), { packId: PACK_A, offset: 50, length: 60 });
    assert.equal(m.size, 1);
    assert.deepEqual(m.get(id(1)), { packId: PACK_A, offset: 10, length: 20 });
  });

  test('the all-zero id is an ordinary id', () => {
    const m = new ChunkMap();
    addLoc(m, Buffer.alloc(32), { packId: PACK_B, offset: 1, length: 2 });
    assert.deepEqual(m.get(Buffer.alloc(32)), { packId: PACK_B, offset: 1, length: 2 });
    assert.equal(m.has(id(0)), false);
  });

  test('ids are copied: views work and later changes to the caller buffer do not matter', () => {
    const m = new ChunkMap();
    const backing = Buffer.concat([randomBytes(7), id(1), randomBytes(9)]);
    const view = backing.subarray(7, 39);
    addLoc(m, view, { packId: PACK_A, offset: 1, length: 1 });
    backing.fill(0xee);
    assert.deepEqual(m.get(id(1)), { packId: PACK_A, offset: 1, length: 1 });
    assert.equal(m.has(backing.subarray(7, 39)), false);
    const lookupView = Buffer.concat([Buffer.alloc(3), id(1)]).subarray(3);
    assert.equal(m.has(lookupView), true);
  });

  test('ids that share their first bytes (same home slot) are kept apart', () => {
    const m = new ChunkMap();
    const ids = Array.from({ length: 3000 }, (_, i) => {
      const b = id(i);
      b.writeUInt32LE(0x12345678, 0); // every id hashes to the same slot, through every growth
      return b;
    });
    ids.forEach((b, i) => addLoc(m, b, { packId: PACK_A, offset: i, length: i + 1 }));
    assert.equal(m.size, ids.length);
    ids.forEach((b, i) => assert.deepEqual(m.get(b), { packId: PACK_A, offset: i, length: i + 1 }, `id ${i}`));
    const stranger = id('stranger');
    stranger.writeUInt32LE(0x12345678, 0);
    assert.equal(m.get(stranger), undefined);
  });

  test('growth through 200k random ids keeps every location', () => {
    const m = new ChunkMap();
    const n = 200_000;
    const ids = randomBytes(n * 32);
    const packs = Array.from({ length: 97 }, () => randomBytes(16).toString('hex'));
    const locOf = (i: number): ChunkLocation => ({ packId: packs[i % packs.length]!, offset: i * 4_194_400 + (i % 13), length: 1000 + (i % 65_536) });
    for (let i = 0; i < n; i++) {
      addLoc(m, ids.subarray(i * 32, i * 32 + 32), locOf(i));
      if (i === 5000) assert.deepEqual(m.get(ids.subarray(0, 32)), locOf(0), 'early entries survive the first growths');
    }
    assert.equal(m.size, n);
    for (let i = 0; i < n; i++) {
      const got = m.get(ids.subarray(i * 32, i * 32 + 32));
      if (!got || got.packId !== locOf(i).packId || got.offset !== locOf(i).offset || got.length !== locOf(i).length) {
        assert.fail(`id ${i}: ${JSON.stringify(got)} instead of ${JSON.stringify(locOf(i))}`);
      }
    }
    const absent = randomBytes(10_000 * 32);
    let found = 0;
    for (let i = 0; i < 10_000; i++) if (m.has(absent.subarray(i * 32, i * 32 + 32))) found++;
    assert.equal(found, 0);
  });

  test('an initial size hint changes nothing visible', () => {
    for (const hint of [0, 1, 1000, 5000, 100_000]) {
      const m = new ChunkMap(hint);
      for (let i = 0; i < 3000; i++) addLoc(m, id(i), { packId: PACK_A, offset: i, length: 1 });
      assert.equal(m.size, 3000);
      for (let i = 0; i < 3000; i++) assert.equal(m.get(id(i))?.offset, i, `hint ${hint}, id ${i}`);
    }
  });

  test('pack ids are shared by their chunks and never mixed up', () => {
    const m = new ChunkMap();
    const packs = Array.from({ length: 300 }, () => randomBytes(16).toString('hex'));
    for (let i = 0; i < 30_000; i++) addLoc(m, id(i), { packId: packs[(i * 7) % packs.length]!, offset: i, length: 1 });
    const seen = new Map<string, number>();
    for (let i = 0; i < 30_000; i++) {
      const packId = m.get(id(i))!.packId;
      assert.equal(packId, packs[(i * 7) % packs.length], `id ${i}`);
      seen.set(packId, (seen.get(packId) ?? 0) + 1);
    }
    assert.equal(seen.size, packs.length);
    for (const count of seen.values()) assert.equal(count, 100);
  });

  test('refs of index tables are found where the table says, patches too, also after the table is renumbered in place', () => {
    const m = new ChunkMap();
    const n = 5000;
    const src = { entries: IndexEntries.alloc(n), packs: [PACK_A, PACK_B] };
    for (let i = 0; i < n; i++) {
      if (i % 5 === 0) src.entries.setZero(i, 4096);
      else src.entries.setData(i, i % 2, 2 ** 33 + i * 100, 60 + i, 4096, id(i));
      if (i % 10 === 0) src.entries.setPatch(i, 1n, (i + 1) % 2, 7 + i, 90, 1024, id(`patch ${i}`));
    }
    for (let r = 0; r < 2 * n; r++) if (src.entries.hasRef(r)) m.addRef(src, r);
    assert.equal(m.size, n - n / 5 + n / 10);
    assert.equal(m.has(id(0)), false, 'zero bases are not added');
    for (let i = 1; i < n; i += 7) {
      if (i % 5 === 0) continue;
      assert.deepEqual(m.get(id(i)), { packId: i % 2 ? PACK_B : PACK_A, offset: 2 ** 33 + i * 100, length: 60 + i });
    }
    assert.deepEqual(m.get(id('patch 20')), { packId: PACK_B, offset: 27, length: 90 });
    // a backup renumbers its pack table in place before the commit: the map follows
    for (let r = 0; r < 2 * n; r++) if (src.entries.hasRef(r)) src.entries.setRefPack(r, 1 - src.entries.refPack(r));
    src.packs.reverse();
    assert.equal(m.get(id(3))!.packId, PACK_B);
    assert.equal(m.get(id(4))!.packId, PACK_A);
    assert.equal(m.get(id('patch 20'))!.packId, PACK_B);
    // a chunk known from a table keeps that location; another entry with its id changes nothing
    addLoc(m, id(3), { packId: 'c'.repeat(32), offset: 1, length: 2 });
    assert.equal(m.get(id(3))!.packId, PACK_B);
    // and refs of several tables live side by side
    const other = { entries: IndexEntries.alloc(1), packs: ['d'.repeat(32)] };
    other.entries.setData(0, 0, 7, 8, 4096, id('other'));
    m.addRef(other, 0);
    addLoc(m, id('loose'), { packId: 'e'.repeat(32), offset: 9, length: 10 });
    assert.deepEqual(m.get(id('other')), { packId: 'd'.repeat(32), offset: 7, length: 8 });
    assert.deepEqual(m.get(id('loose')), { packId: 'e'.repeat(32), offset: 9, length: 10 });
    assert.equal(m.size, n - n / 5 + n / 10 + 2);
  });
});
