import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { allChunks, chunkCount, chunkRange, chunksFromChangedBlocks } from '../../src/backup/plan.js';
import { mulberry32, fuzzSeed } from '../support/random.js';

const KiB = 1024;
const MiB = 1024 * KiB;


const SEED = fuzzSeed();

/** The obvious, slow answer: chunk c must be read iff some changed block inside the device overlaps it. */
function reference(deviceSize: number, chunkSize: number, blockSize: number, blockCount: number, changed: Set<number>): number[] {
  const out: number[] = [];
  for (let c = 0; c * chunkSize < deviceSize; c++) {
    const cs = c * chunkSize;
    const ce = Math.min(cs + chunkSize, deviceSize);
    for (const b of changed) {
      if (b >= blockCount) continue;
      const bs = b * blockSize;
      const be = Math.min(bs + blockSize, deviceSize);
      if (Math.max(bs, cs) < Math.min(be, ce)) {
        out.push(c);
        break;
      }
    }
  }
  return out;
}

function plan(deviceSize: number, chunkSize: number, blockSize: number, blockCount: number, changed: Iterable<number>): number[] {
  const set = new Set(changed);
  return chunksFromChangedBlocks(deviceSize, chunkSize, blockSize, blockCount, (b) => set.has(b));
}

describe('backup plan: cutting a device into chunks', () => {
  test('chunkCount counts a last partial chunk', () => {
    assert.equal(chunkCount(0, 4 * MiB), 0);
    assert.equal(chunkCount(1, 4 * MiB), 1);
    assert.equal(chunkCount(4 * MiB, 4 * MiB), 1);
    assert.equal(chunkCount(4 * MiB + 1, 4 * MiB), 2);
    assert.equal(chunkCount(10 * 4 * MiB - 512, 4 * MiB), 10);
    assert.equal(chunkCount(2 * 2 ** 40, 4 * MiB), 2 * 2 ** 40 / (4 * MiB)); // 2 TiB
  });

  test('chunkRange gives offset and length, short for the last partial chunk', () => {
    const size = 3 * 4 * MiB + 1000;
    assert.deepEqual(chunkRange(0, size, 4 * MiB), { index: 0, offset: 0, length: 4 * MiB });
    assert.deepEqual(chunkRange(2, size, 4 * MiB), { index: 2, offset: 8 * MiB, length: 4 * MiB });
    assert.deepEqual(chunkRange(3, size, 4 * MiB), { index: 3, offset: 12 * MiB, length: 1000 });
    // past 4 GiB and near 2^53, offsets stay exact
    const big = 3 * 2 ** 40 + 512;
    const last = chunkCount(big, 4 * MiB) - 1;
    assert.deepEqual(chunkRange(last, big, 4 * MiB), { index: last, offset: 3 * 2 ** 40, length: 512 });
  });

  test('the chunk ranges tile the device exactly', () => {
    for (const [size, chunk] of [[0, 4096], [1, 4096], [4096, 4096], [10_000, 4096], [12_288, 4096], [1_000_003, 65_536]]) {
      const all = allChunks(size!, chunk!);
      assert.deepEqual(all, Array.from({ length: chunkCount(size!, chunk!) }, (_, i) => i));
      let next = 0;
      for (const i of all) {
        const r = chunkRange(i, size!, chunk!);
        assert.equal(r.offset, next, `size ${size} chunk ${i}`);
        assert.ok(r.length > 0 && r.length <= chunk!);
        next += r.length;
      }
      assert.equal(next, size, `size ${size}: chunks cover the device`);
    }
  });
});

describe('backup plan: chunks from changed CBT blocks', () => {
  const chunk = 64 * KiB;
  const size = 10 * chunk; // 640 KiB, 10 chunks

  test('no change gives no chunks', () => {
    assert.deepEqual(plan(size, chunk, 4 * KiB, size / (4 * KiB), []), []);
    assert.deepEqual(plan(size, chunk, 4 * KiB, 0, []), []);
  });

  test('every block changed gives every chunk', () => {
    for (const block of [512, 4 * KiB, chunk, 3 * chunk, 1000, 100 * KiB]) {
      const count = Math.ceil(size / block);
      assert.deepEqual(plan(size, chunk, block, count, Array.from({ length: count }, (_, i) => i)), allChunks(size, chunk), `block ${block}`);
    }
  });

  test('blocks smaller than chunks: each changed block marks the chunk around it, once', () => {
    const block = 4 * KiB; // 16 blocks per chunk
    assert.deepEqual(plan(size, chunk, block, 160, [0]), [0]);
    assert.deepEqual(plan(size, chunk, block, 160, [15]), [0]);
    assert.deepEqual(plan(size, chunk, block, 160, [16]), [1]);
    assert.deepEqual(plan(size, chunk, block, 160, [0, 1, 2, 15, 16, 17, 159]), [0, 1, 9]);
  });

  test('blocks equal to chunks map one to one', () => {
    assert.deepEqual(plan(size, chunk, chunk, 10, [0, 3, 4, 9]), [0, 3, 4, 9]);
  });

  test('blocks larger than chunks mark every chunk they cover', () => {
    assert.deepEqual(plan(size, chunk, 4 * chunk, 3, [1]), [4, 5, 6, 7]);
    // the last block runs past the device end: only the chunks that exist
    assert.deepEqual(plan(size, chunk, 4 * chunk, 3, [2]), [8, 9]);
    assert.deepEqual(plan(size, chunk, 4 * chunk, 3, [0, 2]), [0, 1, 2, 3, 8, 9]);
  });

  test('blocks not aligned with chunks mark both chunks they straddle', () => {
    const block = 48 * KiB; // block 1 = [48K, 96K) straddles chunks 0 and 1
    assert.deepEqual(plan(size, chunk, block, Math.ceil(size / block), [1]), [0, 1]);
    assert.deepEqual(plan(size, chunk, block, Math.ceil(size / block), [1, 2]), [0, 1, 2]); // block 2 = [96K, 144K)
    assert.deepEqual(plan(size, chunk, block, Math.ceil(size / block), [4]), [3]); // [192K, 240K) lies inside chunk 3
  });

  test('blocks past the device end are ignored', () => {
    assert.deepEqual(plan(size, chunk, 4 * KiB, 1000, [160, 161, 999]), []);
    assert.deepEqual(plan(size, chunk, 4 * KiB, 1000, [159, 500]), [9]);
  });

  test('a partial last chunk is marked by a block that touches it', () => {
    const odd = size + 1000; // chunk 10 holds 1000 bytes
    assert.deepEqual(plan(odd, chunk, 4 * KiB, Math.ceil(odd / (4 * KiB)), [160]), [10]);
    assert.deepEqual(plan(odd, chunk, 4 * KiB, Math.ceil(odd / (4 * KiB)), [161]), []);
  });

  test('blocks at or past the block count are not asked about', () => {
    const asked: number[] = [];
    chunksFromChangedBlocks(size, chunk, 4 * KiB, 20, (b) => (asked.push(b), true));
    assert.ok(asked.every((b) => b >= 0 && b < 20), `asked about ${asked.filter((b) => b >= 20)}`);
  });

  test(`property: matches the brute-force reference on 2000 random cases (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, () => {
    const rnd = mulberry32(SEED);
    const int = (n: number) => Math.floor(rnd() * n);
    const chunkSizes = [3, 512, 1000, 4 * KiB, 64 * KiB, 4 * MiB];
    const blockSizes = [1, 512, 700, 4 * KiB, 64 * KiB, 100_000, 8 * MiB];
    for (let i = 0; i < 2000; i++) {
      const chunkSize = chunkSizes[int(chunkSizes.length)]!;
      const blockSize = blockSizes[int(blockSizes.length)]!;
      // device sizes: a handful of chunks, exact or ragged, kept small enough for the reference
      const maxSize = Math.min(40 * chunkSize, 400 * blockSize);
      const deviceSize = rnd() < 0.3 && maxSize >= chunkSize ? chunkSize * (1 + int(Math.floor(maxSize / chunkSize))) : 1 + int(maxSize);
      const needed = Math.ceil(deviceSize / blockSize);
      const blockCount = Math.max(0, needed + int(7) - 3); // trackers may cover less, or more, than the device
      const density = [0, 0.01, 0.2, 0.7, 1][int(5)]!;
      const changed = new Set<number>();
      for (let b = 0; b < blockCount + 3; b++) if (rnd() < density) changed.add(b);
      const what = `case ${i}: device ${deviceSize}, chunk ${chunkSize}, block ${blockSize} x ${blockCount}, changed ${[...changed].slice(0, 20)}`;
      const got = plan(deviceSize, chunkSize, blockSize, blockCount, changed);
      assert.deepEqual(got, reference(deviceSize, chunkSize, blockSize, blockCount, changed), what);
      for (let k = 1; k < got.length; k++) assert.ok(got[k]! > got[k - 1]!, `${what}: ascending, each once`);
    }
  });
});
