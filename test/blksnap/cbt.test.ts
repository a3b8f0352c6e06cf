/** The CBT rules of shared/docs/blksnap.md as pure functions. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cbtGeometry, changedBlocks, changedByteRanges, incrementalBase, markDirty, newTracker, takeSwitch, trackWrite } from '../../src/blksnap/cbt.js';

const GiB = 1024 ** 3;
let n = 0;
const gen = () => (++n).toString(16).padStart(32, '0');

describe('cbt', () => {
  test('block size: 64 KiB doubling until count <= 2,097,152, at most 64 MiB', () => {
    assert.deepEqual(cbtGeometry(GiB), { blkSize: 65536, blkCount: 16384 });
    assert.deepEqual(cbtGeometry(128 * GiB), { blkSize: 65536, blkCount: 2_097_152 });
    assert.deepEqual(cbtGeometry(128 * GiB + 1), { blkSize: 131072, blkCount: 1_048_577 });
    assert.equal(cbtGeometry(256 * GiB).blkSize, 131072);
    assert.equal(cbtGeometry(1024 * GiB).blkSize, 512 * 1024);
    assert.equal(cbtGeometry(2 ** 60).blkSize, 64 * 1024 * 1024);
    assert.equal(cbtGeometry(100 * 1024).blkCount, 2);
  });

  test('new tracker: previous 0, active 1, zero maps', () => {
    const t = newTracker(GiB, gen());
    assert.equal(t.previous, 0);
    assert.equal(t.active, 1);
    assert.equal(t.writeMap.length, 16384);
    assert.ok(t.writeMap.every((x) => x === 0) && t.readMap.every((x) => x === 0));
  });

  test('the doc walk-through: writes at 3 MiB and 100 MiB after the first take hold 2 after the second', () => {
    const g = gen();
    let t = newTracker(GiB, g);
    t = takeSwitch(t, GiB, gen);
    assert.equal(t.previous, 1);
    assert.equal(t.generationId, g);
    assert.ok(t.readMap.every((x) => x === 0));
    trackWrite(t, 3 * 1024 * 1024, 4096);
    trackWrite(t, 100 * 1024 * 1024, 4096);
    t = takeSwitch(t, GiB, gen);
    assert.equal(t.previous, 2);
    assert.equal(t.generationId, g);
    assert.deepEqual(changedBlocks(t.readMap, 1), [48, 1600]);
    assert.equal(t.readMap[48], 2);
  });

  test('a write spanning blocks marks each; numbers only rise', () => {
    const t = newTracker(GiB, gen());
    t.active = 5;
    trackWrite(t, 65536 - 1, 2);
    assert.deepEqual([t.writeMap[0], t.writeMap[1], t.writeMap[2]], [5, 5, 0]);
    t.active = 3;
    trackWrite(t, 0, 1);
    assert.equal(t.writeMap[0], 5);
    trackWrite(t, 0, 0);
  });

  test('wrap: the take that would make active 256 restarts at 1 with a zeroed write map and a new generation', () => {
    const g = gen();
    let t = newTracker(GiB, g);
    for (let i = 0; i < 254; i++) t = takeSwitch(t, GiB, gen);
    assert.equal(t.active, 255);
    assert.equal(t.generationId, g);
    trackWrite(t, 0, 1);
    t = takeSwitch(t, GiB, gen);
    assert.equal(t.previous, 255);
    assert.equal(t.active, 1);
    assert.notEqual(t.generationId, g);
    assert.equal(t.readMap[0], 255);
    assert.equal(t.writeMap[0], 0);
  });

  test('reset at take on a size change: new generation and geometry', () => {
    const g = gen();
    let t = newTracker(GiB, g);
    t = takeSwitch(t, GiB, gen);
    trackWrite(t, 0, 1);
    t = takeSwitch(t, 2 * GiB, gen);
    assert.notEqual(t.generationId, g);
    assert.equal(t.capacity, 2 * GiB);
    assert.equal(t.blkCount, 32768);
    assert.equal(t.previous, 1);
    assert.ok(t.readMap.every((x) => x === 0));
  });

  test('reset at take on a corrupted map', () => {
    const g = gen();
    let t = newTracker(GiB, g);
    t.corrupted = true;
    t = takeSwitch(t, GiB, gen);
    assert.notEqual(t.generationId, g);
    assert.equal(t.corrupted, false);
  });

  test('mark dirty: write map gets active, read map gets previous', () => {
    let t = newTracker(GiB, gen());
    t = takeSwitch(t, GiB, gen);
    t = takeSwitch(t, GiB, gen); // previous 2, active 3
    markDirty(t, [{ sector: 128, count: 1 }, { sector: 256, count: 256 }]);
    assert.equal(t.writeMap[1], 3);
    assert.equal(t.readMap[1], 2);
    assert.equal(t.writeMap[2], 3);
    assert.equal(t.writeMap[3], 3); // sectors 256..511 = bytes 128 KiB..256 KiB = blocks 2 and 3
    assert.equal(t.writeMap[4], 0);
    assert.deepEqual(changedBlocks(t.readMap, 1), [1, 2, 3]);
  });

  test('incremental rule', () => {
    const base = { generationId: 'a', snapNumber: 3, blkSize: 65536, blkCount: 16384, deviceCapacity: GiB };
    assert.deepEqual(incrementalBase(base, { ...base, snapNumber: 4 }), { ok: true });
    assert.equal(incrementalBase(base, { ...base, snapNumber: 3 }).ok, false);
    assert.equal(incrementalBase(base, { ...base, snapNumber: 2 }).ok, false);
    assert.equal(incrementalBase(base, { ...base, snapNumber: 4, generationId: 'b' }).ok, false);
    assert.equal(incrementalBase(base, { ...base, snapNumber: 4, deviceCapacity: 2 * GiB }).ok, false);
    assert.equal(incrementalBase(base, { ...base, snapNumber: 4, blkSize: 131072 }).ok, false);
  });

  test('changed byte ranges merge and clip to capacity', () => {
    const map = Uint8Array.from([0, 2, 2, 0, 3]);
    assert.deepEqual(changedByteRanges(map, 1, 100, 450), [
      { offset: 100, length: 200 },
      { offset: 400, length: 50 },
    ]);
    assert.deepEqual(changedByteRanges(map, 2, 100, 450), [{ offset: 400, length: 50 }]);
  });
});
