import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IndexEntries, maskLength, patchRuns, type BackupIndex, type IndexHeader } from '../../src/repo/index-file.js';
import { planRestore, type PackRead, type RestoreOp, type ZeroRun } from '../../src/restore/plan.js';
import { mulberry32, fuzzSeed } from '../support/random.js';

const P0 = '00'.repeat(16);
const P1 = '11'.repeat(16);


const SEED = fuzzSeed();

function idFor(i: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(i + 1, 0);
  return b;
}

type Where = { pack: number; offset: number; length: number };
type Spec = ({ zero: true } | Where) & { patch?: Where & { mask: bigint } };

/** An index from a compact description of its regions (a quarter-region piece size). */
function makeIndex(chunkSize: number, deviceSize: number, packs: string[], specs: Spec[]): BackupIndex {
  assert.equal(specs.length, Math.ceil(deviceSize / chunkSize), 'test setup: one spec per region');
  const pieceSize = chunkSize / 4;
  const t = IndexEntries.alloc(specs.length);
  specs.forEach((s, i) => {
    const regionLength = Math.min(chunkSize, deviceSize - i * chunkSize);
    if ('zero' in s) t.setZero(i, regionLength);
    else t.setData(i, s.pack, s.offset, s.length, regionLength, idFor(i));
    if (s.patch) t.setPatch(i, s.patch.mask, s.patch.pack, s.patch.offset, s.patch.length, maskLength(s.patch.mask, pieceSize, regionLength), idFor(1000 + i));
  });
  const header = { chunkSize, pieceSize, device: { key: 'dev', path: '/dev/x', size: deviceSize } } as unknown as IndexHeader;
  return { header, packs, entries: t };
}

const zero: Spec = { zero: true };
const at = (pack: number, offset: number, length: number) => ({ pack, offset, length });

function reads(ops: RestoreOp[]): PackRead[] {
  return ops.filter((o): o is PackRead => o.kind === 'read');
}

/**
 * Checks a plan by carrying it out on a device map: each read's chunk is cut from the pack at
 * read offset + `at` (which must be exactly its ref's envelope) and written at its device
 * offset; zero runs write zero regions. Before the barrier every region's base arrives exactly
 * once, after it every patch exactly once, going to the runs of its mask; within a pass, ops come
 * in the order of the first byte they write, and a read's chunks in device order.
 */
function applyPlan(index: BackupIndex, ops: RestoreOp[], maxReadBytes: number): void {
  const { chunkSize, pieceSize, device } = index.header;
  const e = index.entries;
  const filled = [new Array<number>(e.length).fill(0), new Array<number>(e.length).fill(0)];
  let slot = 0;
  let opStart = -1; // ops come in the order of their first byte
  for (const op of ops) {
    if (op.kind === 'barrier') {
      assert.equal(slot, 0, 'one barrier');
      slot = 1;
      opStart = -1;
      continue;
    }
    const first = op.kind === 'zero' ? op.offset : op.chunks[0]?.deviceOffset ?? -1;
    assert.ok(first > opStart, `op at device byte ${first} is out of order`);
    opStart = first;
    if (op.kind === 'zero') {
      assert.equal(slot, 0, 'zero runs belong to the base pass');
      assert.ok(op.length > 0, 'empty zero run');
      assert.equal(op.offset % chunkSize, 0, 'zero runs start on a region');
      for (let o = op.offset; o < op.offset + op.length; o += chunkSize) {
        const i = o / chunkSize;
        assert.ok(i < e.length && !e.baseIsData(i), `zero run covers data region ${i}`);
        filled[0]![i]!++;
      }
      const lastIndex = Math.ceil((op.offset + op.length) / chunkSize) - 1;
      assert.equal(op.offset + op.length, Math.min((lastIndex + 1) * chunkSize, device.size), 'zero run ends at a region end');
      continue;
    }
    assert.ok(op.chunks.length > 0, 'empty read');
    assert.ok(op.length <= maxReadBytes || op.chunks.length === 1, `read of ${op.length} bytes merges past the limit ${maxReadBytes}`);
    // the fetched bytes: for each pack offset, which envelope (by region) lives there
    let expectAt = 0;
    let cursor = 0;
    for (const c of op.chunks) {
      const r = 2 * c.index + slot;
      assert.ok(e.hasRef(r), `region ${c.index} planned as a read in pass ${slot}`);
      assert.equal(op.packId, index.packs[e.refPack(r)], `region ${c.index} read from the wrong pack`);
      assert.equal(c.at, expectAt, `region ${c.index}: envelopes of one read are back to back`);
      assert.equal(op.offset + c.at, e.refOffset(r), `region ${c.index}: wrong place in the pack`);
      assert.equal(c.length, e.refLength(r));
      assert.ok(c.at + c.length <= op.length, `region ${c.index} runs past its read`);
      assert.equal(c.deviceOffset, c.index * chunkSize, `region ${c.index}: device offset`);
      assert.ok(c.deviceOffset >= cursor, `region ${c.index} is out of device order`);
      assert.equal(c.plainLength, e.refPlain(r));
      assert.deepEqual(c.id, e.refId(r));
      if (slot === 1) assert.deepEqual(c.runs, patchRuns(c.deviceOffset, e.patchMask(c.index), pieceSize, e.regionLength(c.index)));
      else {
        assert.equal(c.runs, undefined);
        const rest = ~e.patchMask(c.index) & ((1n << 64n) - 1n);
        assert.deepEqual(c.uncovered, e.hasPatch(c.index) ? patchRuns(c.deviceOffset, rest, pieceSize, e.regionLength(c.index)) : undefined);
      }
      filled[slot]![c.index]!++;
      cursor = c.deviceOffset + e.regionLength(c.index);
      expectAt += c.length;
    }
    assert.equal(op.length, expectAt, 'a read fetches exactly its envelopes');
  }
  filled[0]!.forEach((n, i) => assert.equal(n, 1, `region ${i}: base restored ${n} times`));
  filled[1]!.forEach((n, i) => assert.equal(n, e.hasPatch(i) ? 1 : 0, `region ${i}: patch restored ${n} times`));
}

/**
 * The planner merges greedily: two neighbouring zero runs, or two reads of which the second
 * starts with the next data chunk and the next envelope of the same pack, must not both be there
 * (zero runs between data chunks do not keep reads apart).
 */
function assertMaximal(all: RestoreOp[], maxReadBytes: number): void {
  const b = all.findIndex((o) => o.kind === 'barrier');
  if (b >= 0) {
    assertMaximal(all.slice(0, b), maxReadBytes);
    assertMaximal(all.slice(b + 1), maxReadBytes);
    return;
  }
  const ops = all;
  const zeros = ops.filter((o): o is ZeroRun => o.kind === 'zero');
  for (let k = 1; k < zeros.length; k++) assert.notEqual(zeros[k - 1]!.offset + zeros[k - 1]!.length, zeros[k]!.offset, `zero runs ${k - 1} and ${k} not merged`);
  const rs = reads(ops);
  for (let k = 1; k < rs.length; k++) {
    const a = rs[k - 1]!;
    const b = rs[k]!;
    assert.ok(a.chunks.at(-1)!.index < b.chunks[0]!.index, `reads ${k - 1} and ${k} interleave`);
    if (a.packId === b.packId && a.offset + a.length === b.offset) {
      assert.ok(a.length + b.chunks[0]!.length > maxReadBytes, `reads ${k - 1} and ${k} could have been one`);
    }
  }
}

describe('restore plan', () => {
  const C = 4096;

  test('an all-zero device is one zero run, a partial last chunk included', () => {
    const ix = makeIndex(C, 5 * C + 100, [], Array(6).fill(zero));
    assert.deepEqual(planRestore(ix), [{ kind: 'zero', offset: 0, length: 5 * C + 100 }]);
  });

  test('an empty device needs nothing', () => {
    assert.deepEqual(planRestore(makeIndex(C, 0, [], [])), []);
  });

  test('zero runs are merged and split only by data', () => {
    const ix = makeIndex(C, 6 * C, [P0], [zero, zero, at(0, 0, 100), zero, zero, zero]);
    const ops = planRestore(ix);
    assert.deepEqual(ops.map((o) => (o.kind === 'barrier' ? [o.kind] : [o.kind, o.offset, o.length])), [
      ['zero', 0, 2 * C],
      ['read', 0, 100],
      ['zero', 3 * C, 3 * C],
    ]);
    applyPlan(ix, ops, 16 * 1024 * 1024);
  });

  test('neighbouring envelopes of one pack become one read, with their offsets inside it', () => {
    const ix = makeIndex(C, 3 * C, [P0], [at(0, 1000, 50), at(0, 1050, 70), at(0, 1120, 30)]);
    const ops = planRestore(ix);
    assert.equal(ops.length, 1);
    const r = ops[0] as PackRead;
    assert.deepEqual({ kind: r.kind, packId: r.packId, offset: r.offset, length: r.length }, { kind: 'read', packId: P0, offset: 1000, length: 150 });
    assert.deepEqual(r.chunks.map((c) => [c.index, c.deviceOffset, c.at, c.length]), [[0, 0, 0, 50], [1, C, 50, 70], [2, 2 * C, 120, 30]]);
  });

  test('merging stops at the read size limit', () => {
    const specs = Array.from({ length: 10 }, (_, i) => at(0, i * 100, 100));
    const ix = makeIndex(C, 10 * C, [P0], specs);
    const ops = reads(planRestore(ix, 300));
    assert.deepEqual(ops.map((r) => [r.offset, r.length, r.chunks.length]), [[0, 300, 3], [300, 300, 3], [600, 300, 3], [900, 100, 1]]);
    applyPlan(ix, ops, 300);
    // a limit below one envelope still restores every chunk, one read each
    const one = reads(planRestore(ix, 50));
    assert.equal(one.length, 10);
    applyPlan(ix, one, 50);
  });

  test('envelopes that are not contiguous in the pack are separate reads', () => {
    const ix = makeIndex(C, 4 * C, [P0], [at(0, 0, 100), at(0, 101, 100), at(0, 50, 50), at(0, 0, 100)]);
    const ops = reads(planRestore(ix));
    assert.deepEqual(ops.map((r) => [r.offset, r.length]), [[0, 100], [101, 100], [50, 50], [0, 100]]);
    applyPlan(ix, ops, 16 * 1024 * 1024);
  });

  test('a contiguous envelope in another pack starts a new read', () => {
    const ix = makeIndex(C, 3 * C, [P0, P1], [at(0, 0, 100), at(1, 100, 100), at(0, 200, 100)]);
    const ops = reads(planRestore(ix));
    assert.deepEqual(ops.map((r) => [r.packId, r.offset, r.length]), [[P0, 0, 100], [P1, 100, 100], [P0, 200, 100]]);
  });

  test('zero runs between neighbouring envelopes do not split the read', () => {
    const ix = makeIndex(C, 5 * C, [P0], [at(0, 0, 100), zero, zero, at(0, 100, 100), zero]);
    const ops = planRestore(ix);
    assert.deepEqual(ops.map((o) => (o.kind === 'barrier' ? [o.kind] : [o.kind, o.offset, o.length])), [
      ['read', 0, 200],
      ['zero', C, 2 * C],
      ['zero', 4 * C, C],
    ]);
    assert.deepEqual((ops[0] as PackRead).chunks.map((c) => [c.index, c.at]), [[0, 0], [3, 100]]);
    applyPlan(ix, ops, 16 * 1024 * 1024);
  });

  test('a data chunk of another pack between neighbouring envelopes splits the read', () => {
    const ix = makeIndex(C, 4 * C, [P0, P1], [at(0, 0, 100), zero, at(1, 0, 100), at(0, 100, 100)]);
    const ops = reads(planRestore(ix));
    assert.deepEqual(ops.map((r) => [r.packId, r.offset, r.length]), [[P0, 0, 100], [P1, 0, 100], [P0, 100, 100]]);
    applyPlan(ix, planRestore(ix), 16 * 1024 * 1024);
  });

  test('the partial last chunk is read with its own plain length', () => {
    const ix = makeIndex(C, 2 * C + 7, [P0], [at(0, 0, 100), at(0, 100, 100), at(0, 200, 63)]);
    const [r] = reads(planRestore(ix));
    assert.equal(r!.chunks[2]!.plainLength, 7);
    assert.equal(r!.chunks[2]!.deviceOffset, 2 * C);
  });

  test('offsets past 4 GiB in packs and devices stay exact', () => {
    const chunk = 4 * 1024 * 1024;
    const n = 1100; // a 4.3 GiB device
    const base = 5 * 2 ** 32;
    const specs: Spec[] = Array.from({ length: n }, (_, i) => (i < 1000 ? zero : at(0, base + (i - 1000) * 500, 500)));
    const ix = makeIndex(chunk, n * chunk, [P0], specs);
    const ops = planRestore(ix);
    assert.equal(ops.length, 2);
    const r = ops[1] as PackRead;
    assert.equal(r.offset, base);
    assert.equal(r.chunks.at(-1)!.deviceOffset, 1099 * chunk);
    assert.equal(r.chunks.at(-1)!.at, 99 * 500);
    applyPlan(ix, ops, 16 * 1024 * 1024);
  });

  test('patches come after a barrier, in device order, each with the runs of its pieces', () => {
    const ix = makeIndex(C, 3 * C + 100, [P0, P1], [
      { ...at(0, 0, 100), patch: { ...at(1, 500, 60), mask: 0b1001n } },
      zero,
      { zero: true, patch: { ...at(1, 560, 70), mask: 0b0110n } },
      at(0, 100, 90),
    ]);
    const ops = planRestore(ix);
    assert.deepEqual(ops.map((o) => (o.kind === 'barrier' ? [o.kind] : [o.kind, o.offset, o.length])), [
      ['read', 0, 190],
      ['zero', C, 2 * C],
      ['barrier'],
      ['read', 500, 130],
    ]);
    assert.deepEqual((ops[3] as PackRead).chunks.map((c) => c.runs), [
      [{ offset: 0, length: C / 4 }, { offset: 3 * (C / 4), length: C / 4 }],
      [{ offset: 2 * C + C / 4, length: C / 2 }],
    ]);
    applyPlan(ix, ops, 16 * 1024 * 1024);
  });

  test(`property: every entry restored exactly once from the right bytes, greedily merged (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, () => {
    const rnd = mulberry32(SEED);
    const int = (n: number) => Math.floor(rnd() * n);
    for (let iter = 0; iter < 1000; iter++) {
      const chunkSize = [512, 4096, 65_536][int(3)]!;
      const n = int(60);
      const deviceSize = n === 0 ? 0 : (n - 1) * chunkSize + 1 + int(chunkSize);
      const packs = Array.from({ length: 1 + int(3) }, (_, p) => p.toString(16).padStart(32, 'a'));
      const cursor = packs.map(() => int(10_000));
      const specs: Spec[] = [];
      const copy = (w: Where): Spec => ({ ...w });
      const done: Array<{ pack: number; offset: number; length: number }> = [];
      let pack = 0;
      for (let i = 0; i < n; i++) {
        const r = rnd();
        if (r < 0.25) specs.push({ zero: true });
        else if (r < 0.35 && done.length) specs.push(copy(done[int(done.length)]!)); // deduplicated: an earlier envelope again
        else {
          if (rnd() < 0.2) pack = int(packs.length);
          if (rnd() < 0.15) cursor[pack]! += 1 + int(500); // a gap: envelopes of other devices in between
          const s = at(pack, cursor[pack]!, 57 + int(3000));
          cursor[pack]! += s.length;
          specs.push(s);
          done.push(s);
        }
      }
      // patches, written later than the bases: into their own pack, back to back in device order
      const patchPack = packs.length - 1;
      let patchAt = cursor[patchPack]! + 100;
      specs.forEach((s, i) => {
        if (rnd() >= 0.3) return;
        const pieces = Math.ceil(Math.min(chunkSize, deviceSize - i * chunkSize) / (chunkSize / 4));
        const mask = BigInt(1 + int(2 ** pieces - 1));
        s.patch = { ...at(patchPack, patchAt, 57 + int(1000)), mask };
        patchAt += s.patch.length;
      });
      const ix = makeIndex(chunkSize, deviceSize, packs, specs);
      const limit = [100, 5000, 20_000, 16 * 1024 * 1024][int(4)]!;
      const ops = planRestore(ix, limit);
      const what = `iteration ${iter}: ${n} chunks of ${chunkSize}, limit ${limit}`;
      try {
        applyPlan(ix, ops, limit);
        assertMaximal(ops, limit);
      } catch (e) {
        assert.fail(`${what}: ${(e as Error).message}`);
      }
      const zeroBytes = ops.filter((o): o is ZeroRun => o.kind === 'zero').reduce((s, o) => s + o.length, 0);
      const dataBytes = reads(ops).reduce((s, r) => s + r.chunks.reduce((t, c) => t + (c.runs ? 0 : c.plainLength), 0), 0);
      assert.equal(zeroBytes + dataBytes, deviceSize, `${what}: the base pass covers the device`);
    }
  });
});
