import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkGeometry,
  differingPieces,
  fullMask,
  markedPieces,
  maskBytes,
  maskRuns,
  pieceCount,
  planRegion,
  popcount,
  regionCount,
  regionLength,
  type RegionGeometry,
} from '../../src/backup/region-plan.js';
import { fuzzSeed, mulberry32 } from '../support/random.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEED = fuzzSeed();

/** Slow answer: piece p of region r is marked iff a changed block overlaps it inside the device. */
function referenceMarked(g: RegionGeometry, blockSize: number, changed: number[]): Map<number, bigint> {
  const out = new Map<number, bigint>();
  for (let r = 0; r < regionCount(g); r++) {
    let mask = 0n;
    for (let p = 0; p < pieceCount(g, r); p++) {
      const ps = r * g.regionSize + p * g.pieceSize;
      const pe = Math.min(g.deviceSize, ps + g.pieceSize, (r + 1) * g.regionSize);
      if (changed.some((b) => Math.max(b * blockSize, ps) < Math.min(Math.min(g.deviceSize, (b + 1) * blockSize), pe))) mask |= 1n << BigInt(p);
    }
    if (mask) out.set(r, mask);
  }
  return out;
}

describe('region plan: geometry', () => {
  test('regions and pieces tile the device, the last ones short', () => {
    const g = { deviceSize: 3 * MiB + 100 * KiB + 7, regionSize: MiB, pieceSize: 64 * KiB };
    checkGeometry(g);
    assert.equal(regionCount(g), 4);
    assert.equal(regionLength(g, 3), 100 * KiB + 7);
    assert.equal(pieceCount(g, 0), 16);
    assert.equal(pieceCount(g, 3), 2);
    assert.equal(fullMask(g, 3), 0b11n);
    assert.deepEqual(maskRuns(g, 3, 0b11n), [{ offset: 3 * MiB, length: 100 * KiB + 7 }]);
    assert.equal(maskBytes(g, 0, fullMask(g, 0)), MiB);
  });

  test('geometry out of bounds is refused', () => {
    assert.throws(() => checkGeometry({ deviceSize: MiB, regionSize: MiB, pieceSize: 4 * KiB }), /more than 64 pieces/);
    assert.throws(() => checkGeometry({ deviceSize: MiB, regionSize: MiB, pieceSize: 3 * KiB }), /not a multiple/);
    assert.throws(() => checkGeometry({ deviceSize: -1, regionSize: MiB, pieceSize: 64 * KiB }), /device size/);
  });

  test('maskRuns merges adjacent pieces and never leaves the region', () => {
    const g = { deviceSize: 4 * MiB, regionSize: MiB, pieceSize: 64 * KiB };
    assert.deepEqual(maskRuns(g, 1, 0b1011n), [
      { offset: MiB, length: 128 * KiB },
      { offset: MiB + 192 * KiB, length: 64 * KiB },
    ]);
    assert.deepEqual(maskRuns(g, 2, 0xffffn), [{ offset: 2 * MiB, length: MiB }]);
    assert.deepEqual(maskRuns(g, 2, 0n), []);
  });
});

describe('region plan: CBT blocks to marked pieces', () => {
  test('blocks equal to pieces, larger, smaller, and past the device end', () => {
    const g = { deviceSize: 2 * MiB + 10 * KiB, regionSize: MiB, pieceSize: 64 * KiB };
    assert.deepEqual(markedPieces(g, 64 * KiB, [0, 17, 32]), new Map([[0, 1n], [1, 2n], [2, 1n]]));
    // one 256 KiB block marks four pieces; a 2 MiB block marks two regions whole
    assert.deepEqual(markedPieces(g, 256 * KiB, [1]), new Map([[0, 0xf0n]]));
    assert.deepEqual(markedPieces(g, 2 * MiB, [0, 1]), new Map([[0, 0xffffn], [1, 0xffffn], [2, 1n]]));
    // 16 KiB blocks: four of them share one piece
    assert.deepEqual(markedPieces(g, 16 * KiB, [0, 1, 2, 3, 4]), new Map([[0, 0b11n]]));
    // a block that starts past the end of the device marks nothing
    assert.deepEqual(markedPieces(g, 64 * KiB, [1000]), new Map());
  });

  test(`random geometries agree with the slow reference (seed ${SEED})`, () => {
    const rnd = mulberry32(SEED);
    for (let round = 0; round < 300; round++) {
      const pieceSize = [4, 16, 64][Math.floor(rnd() * 3)]! * KiB;
      const regionSize = pieceSize * (1 + Math.floor(rnd() * 64));
      const deviceSize = Math.floor(rnd() * 12 * regionSize) + 1;
      const blockSize = [4, 16, 64, 128, 1024][Math.floor(rnd() * 5)]! * KiB;
      const blocks = Math.ceil(deviceSize / blockSize) + 2;
      const changed = [...new Set(Array.from({ length: Math.floor(rnd() * 10) }, () => Math.floor(rnd() * blocks)))].sort((a, b) => a - b);
      const g = { deviceSize, regionSize, pieceSize };
      assert.deepEqual(markedPieces(g, blockSize, changed), referenceMarked(g, blockSize, changed), JSON.stringify({ g, blockSize, changed }));
    }
  });
});

describe('region plan: base + one patch', () => {
  const g = { deviceSize: 8 * MiB, regionSize: MiB, pieceSize: 64 * KiB };

  test('a few marked pieces become a patch that reads only them', () => {
    const a = planRegion(g, 2, 0n, 0b100001n);
    assert.equal(a.kind, 'patch');
    assert.deepEqual(a.runs, [
      { offset: 2 * MiB, length: 64 * KiB },
      { offset: 2 * MiB + 5 * 64 * KiB, length: 64 * KiB },
    ]);
  });

  test("the parent's patch is kept in the union and read again", () => {
    const a = planRegion(g, 0, 0b11n, 0b1000n);
    assert.deepEqual(a, { kind: 'patch', mask: 0b1011n, runs: [{ offset: 0, length: 128 * KiB }, { offset: 192 * KiB, length: 64 * KiB }] });
  });

  test('half the region may be a patch; one more piece makes the region whole', () => {
    assert.equal(planRegion(g, 0, 0xffn, 0n).kind, 'patch');
    assert.deepEqual(planRegion(g, 0, 0xffn, 0x100n), { kind: 'whole', runs: [{ offset: 0, length: MiB }] });
  });

  test('a short last region follows the same rule on its own pieces', () => {
    const s = { deviceSize: MiB + 130 * KiB, regionSize: MiB, pieceSize: 64 * KiB };
    assert.equal(pieceCount(s, 1), 3);
    assert.deepEqual(planRegion(s, 1, 0n, 0b100n), { kind: 'patch', mask: 0b100n, runs: [{ offset: MiB + 128 * KiB, length: 2 * KiB }] });
    assert.equal(planRegion(s, 1, 0b1n, 0b100n).kind, 'whole');
  });

  test(`a long chain of random writes, stored as base + patch, always rebuilds the device (seed ${SEED})`, () => {
    const rnd = mulberry32(SEED ^ 0x5eed);
    const geo = { deviceSize: 5 * 256 * KiB + 12 * KiB, regionSize: 256 * KiB, pieceSize: 16 * KiB };
    const dev = new Uint8Array(geo.deviceSize);
    // the stored state of each region: base bytes and patch (mask + concatenated piece bytes)
    const stored = Array.from({ length: regionCount(geo) }, (_, r) => ({
      base: dev.slice(r * geo.regionSize, r * geo.regionSize + regionLength(geo, r)),
      mask: 0n,
      patch: new Uint8Array(0),
    }));
    const rebuild = (r: number): Uint8Array => {
      const out = stored[r]!.base.slice();
      let at = 0;
      for (const run of maskRuns(geo, r, stored[r]!.mask)) {
        out.set(stored[r]!.patch.subarray(at, at + run.length), run.offset - r * geo.regionSize);
        at += run.length;
      }
      assert.equal(at, stored[r]!.patch.length);
      return out;
    };
    let bytesRead = 0;
    for (let backup = 0; backup < 40; backup++) {
      const blockSize = 4 * KiB;
      const changed = new Set<number>();
      for (let w = 0; w < 1 + Math.floor(rnd() * 12); w++) {
        const b = Math.floor((rnd() * geo.deviceSize) / blockSize);
        dev.fill(backup + 1 + w, b * blockSize, Math.min(geo.deviceSize, (b + 1) * blockSize));
        changed.add(b);
      }
      const marked = markedPieces(geo, blockSize, [...changed].sort((a, b) => a - b));
      for (const [r, m] of marked) {
        const action = planRegion(geo, r, stored[r]!.mask, m);
        const parts = action.runs.map((run) => dev.slice(run.offset, run.offset + run.length));
        bytesRead += parts.reduce((n, p) => n + p.length, 0);
        if (action.kind === 'whole') stored[r] = { base: Buffer.concat(parts), mask: 0n, patch: new Uint8Array(0) };
        else stored[r] = { base: stored[r]!.base, mask: action.mask, patch: Buffer.concat(parts) };
        assert.ok(popcount(stored[r]!.mask) <= pieceCount(geo, r) / 2);
      }
      for (let r = 0; r < regionCount(geo); r++) {
        const want = Buffer.from(dev.subarray(r * geo.regionSize, r * geo.regionSize + regionLength(geo, r)));
        assert.ok(Buffer.from(rebuild(r)).equals(want), `backup ${backup}, region ${r}`);
      }
    }
    assert.ok(bytesRead < 40 * geo.deviceSize, 'reads stay below whole-device reads');
  });
});

describe('region plan: comparing a region with its parent', () => {
  test('differingPieces names exactly the pieces with a changed byte', () => {
    const g = { deviceSize: MiB + 100, regionSize: MiB, pieceSize: 64 * KiB };
    const a = new Uint8Array(MiB);
    const b = a.slice();
    b[64 * KiB] = 1; // piece 1
    b[MiB - 1] = 9; // piece 15
    assert.equal(differingPieces(g, 0, a, b), (1n << 1n) | (1n << 15n));
    assert.equal(differingPieces(g, 1, new Uint8Array(100), new Uint8Array(100)), 0n);
  });
});
