/**
 * chooseIncrementalMethod (src/backup/chain.ts): when an incremental may trust the CBT map, and
 * otherwise why it must read everything and compare digests. The rule is shared/docs/blksnap.md,
 * "Incremental rule": same generation, a later snapshot number, same size and block size; plus
 * what the repository knows (a previous backup exists, is intact, has CBT state, same chunk size).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseIncrementalMethod, type ChainInput, type IncrementalMethod } from '../../src/backup/chain.js';
import { newTracker, takeSwitch, type TrackerState } from '../../src/blksnap/cbt.js';
import { pieceSizeFor, type CbtState, type IndexHeader } from '../../src/repo/index-file.js';
import { mulberry32 as rng } from '../support/random.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const GEN_A = 'a'.repeat(32);
const GEN_B = 'b'.repeat(32);

function header(over: { size?: number; chunkSize?: number; cbt?: CbtState | null; backupId?: string } = {}): IndexHeader {
  const size = over.size ?? GiB;
  return {
    formatVersion: 2,
    backupId: over.backupId ?? '20260101T000000Z-prev',
    kind: 'full',
    device: { key: 'dev-sda1', path: '/dev/sda1', size, logicalBlockSize: 512, fsType: null, fsUuid: null },
    time: '2026-01-01T00:00:00.000Z',
    toolVersion: '0.1.0',
    chunkSize: over.chunkSize ?? 4 * MiB,
    pieceSize: pieceSizeFor(over.chunkSize ?? 4 * MiB),
    parent: null,
    snapshot: over.cbt !== null,
    cbt: over.cbt === undefined ? { generationId: GEN_A, snapNumber: 7, blockSize: 65536, blockCount: 16384 } : over.cbt,
    method: { mode: 'full', reason: null },
    stats: { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0, durationMs: 0 },
  };
}

/** A valid chain: previous at (A, 7), current at (A, 8), same 1 GiB device and 4 MiB chunks. */
function valid(): ChainInput {
  return {
    previous: header(),
    previousDamage: null,
    current: { generationId: GEN_A, snapNumber: 8, blockSize: 65536, blockCount: 16384 },
    deviceSize: GiB,
    chunkSize: 4 * MiB,
  };
}

function digestReason(m: IncrementalMethod): string {
  assert.equal(m.mode, 'digest', `expected digest, got ${JSON.stringify(m)}`);
  assert.equal(typeof m.reason, 'string');
  assert.ok(m.reason!.length > 10, `reason too short to explain anything: ${JSON.stringify(m.reason)}`);
  return m.reason!;
}


describe('chooseIncrementalMethod: one test per rule', () => {
  test('everything matching and a greater snapshot number → cbt, no reason', () => {
    assert.deepEqual(chooseIncrementalMethod(valid()), { mode: 'cbt', reason: null });
    // a jump of more than one (snapshots taken by failed runs or other tools in between) is fine:
    // the changed blocks are read_map[i] > S, which covers every take since S
    assert.deepEqual(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, snapNumber: 255 } }), { mode: 'cbt', reason: null });
  });

  test('no snapshot (current null, --no-snapshot) → digest, naming the missing snapshot', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), current: null }));
    assert.match(r, /no snapshot|--no-snapshot/);
  });

  test('no previous backup → digest, saying there is none', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), previous: null }));
    assert.match(r, /no previous backup/);
  });

  test('previous damaged → digest naming the backup and the damage', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), previous: header({ backupId: 'B-41' }), previousDamage: 'pack 0a1b… is missing' }));
    assert.match(r, /damaged/);
    assert.ok(r.includes('pack 0a1b… is missing'), r);
    assert.ok(r.includes('B-41'), r);
  });

  test(
    'previous damaged with an empty message (previousDamage "", e.g. a CorruptError without text) → still digest',
    () => {
      assert.equal(chooseIncrementalMethod({ ...valid(), previousDamage: '' }).mode, 'digest');
    },
  );

  test('device size changed → digest with both sizes', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), deviceSize: 2 * GiB }));
    assert.match(r, /size/);
    assert.ok(r.includes(String(GiB)) && r.includes(String(2 * GiB)), r);
    // and the old size comes first
    assert.ok(r.indexOf(String(GiB)) < r.indexOf(String(2 * GiB)), r);
  });

  test('piece size changed → digest naming the piece size', () => {
    const v = valid();
    const r = digestReason(chooseIncrementalMethod({ ...v, previous: { ...v.previous!, pieceSize: 128 * 1024 } }));
    assert.match(r, /piece size/);
  });

  test('chunk size changed → digest naming the chunk size', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), chunkSize: 1 * MiB }));
    assert.match(r, /chunk size/);
  });

  test('previous backup without CBT state (made with --no-snapshot) → digest naming it', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), previous: header({ cbt: null, backupId: 'B-nosnap' }) }));
    assert.match(r, /change.tracking|CBT/i);
    assert.match(r, /without a snapshot|no-snapshot/);
    assert.ok(r.includes('B-nosnap'), r);
  });

  test('previous backup header from before the cbt field existed (cbt missing) → digest, not a crash', () => {
    const prev = header();
    delete (prev as Partial<IndexHeader>).cbt;
    const r = digestReason(chooseIncrementalMethod({ ...valid(), previous: prev }));
    assert.match(r, /change.tracking|CBT/i);
  });

  test('generation changed (reboot / module reload: new tracker at snap 1) → digest naming the generation', () => {
    // a new tracker after reboot: fresh generation, the first take reports snap 1
    const r = digestReason(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, generationId: GEN_B, snapNumber: 1 } }));
    assert.match(r, /generation/);
    // a new generation with a *higher* number must be refused just the same
    const r2 = digestReason(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, generationId: GEN_B, snapNumber: 200 } }));
    assert.match(r2, /generation/);
  });

  test('wrap at 255, replayed with takeSwitch: the wrap shows as a change (generation, then number)', () => {
    // Drive one tracker through 256 takes as the module does and back up after every take.
    let gens = 0;
    const newGen = () => (++gens).toString(16).padStart(32, '0');
    let t: TrackerState = newTracker(GiB, newGen());
    const state = (s: TrackerState): CbtState => ({ generationId: s.generationId, snapNumber: s.previous, blockSize: s.blkSize, blockCount: s.blkCount });
    const decisions: Array<{ from: CbtState; to: CbtState; m: IncrementalMethod }> = [];
    let prev: CbtState | null = null;
    for (let i = 0; i < 257; i++) {
      t = takeSwitch(t, GiB, newGen);
      const cur = state(t);
      if (prev) decisions.push({ from: prev, to: cur, m: chooseIncrementalMethod({ ...valid(), previous: header({ cbt: prev }), current: cur }) });
      prev = cur;
    }
    const broken = decisions.filter((d) => d.m.mode === 'digest');
    // Everything up to the wrap chains; the wrap breaks the chain; after it, chaining resumes.
    assert.ok(decisions.slice(0, 250).every((d) => d.m.mode === 'cbt'));
    assert.ok(broken.length >= 1 && broken.length <= 2, JSON.stringify(broken));
    assert.equal(decisions[decisions.length - 1]!.m.mode, 'cbt', 'chaining resumes after the wrap');
    for (const d of broken) {
      const differs = d.from.generationId !== d.to.generationId || d.to.snapNumber <= d.from.snapNumber;
      assert.ok(differs);
      assert.match(d.m.reason!, /generation|snapshot number/);
    }
  });

  test('snapshot number equal → digest naming the numbers', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, snapNumber: 7 } }));
    assert.match(r, /snapshot number/);
    assert.match(r, /7\D+7/);
  });

  test('snapshot number lower with the same generation (200 → 3) → digest naming both numbers', () => {
    const r = digestReason(
      chooseIncrementalMethod({
        ...valid(),
        previous: header({ cbt: { generationId: GEN_A, snapNumber: 200, blockSize: 65536, blockCount: 16384 } }),
        current: { ...valid().current!, snapNumber: 3 },
      }),
    );
    assert.match(r, /snapshot number/);
    assert.ok(r.includes('200') && r.includes('3'), r);
  });

  test('CBT block size changed → digest naming the block size', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, blockSize: 131072, blockCount: 8192 } }));
    assert.match(r, /block size/);
  });

  test('CBT block count changed (same block size) → digest naming the CBT blocks', () => {
    const r = digestReason(chooseIncrementalMethod({ ...valid(), current: { ...valid().current!, blockCount: 16385 } }));
    // The code says "the CBT block size changed" here too (see report): assert only that it is about CBT blocks.
    assert.match(r, /block/);
  });
});

describe('chooseIncrementalMethod: precedence', () => {
  // The order a user needs: their own choice (--no-snapshot) first, then what the repository
  // lacks (no previous, damaged), then what changed on the device (size), in the repository
  // (chunk size), in the previous backup (no CBT), and last what the tracker says.
  type Cause = 'noSnapshot' | 'noPrevious' | 'damaged' | 'size' | 'chunk' | 'noCbt' | 'generation' | 'number' | 'blocks';
  const ORDER: Cause[] = ['noSnapshot', 'noPrevious', 'damaged', 'size', 'chunk', 'noCbt', 'generation', 'number', 'blocks'];
  const NAMES: Record<Cause, RegExp> = {
    noSnapshot: /no snapshot \(--no-snapshot\)|--no-snapshot/,
    noPrevious: /no previous backup/,
    damaged: /damaged/,
    size: /device size/,
    chunk: /chunk size/,
    noCbt: /no change-tracking state|without a snapshot/,
    generation: /generation/,
    // both numbers, old first: the generation reason may mention the snapshot number too (a wrap at 255)
    number: /snapshot number.*\b7\b\D+\b5\b/,
    blocks: /CBT block/,
  };

  function build(causes: Set<Cause>): ChainInput {
    const prevCbt: CbtState | null = causes.has('noCbt') ? null : { generationId: GEN_A, snapNumber: 7, blockSize: 65536, blockCount: 16384 };
    return {
      previous: causes.has('noPrevious') ? null : header({ cbt: prevCbt }),
      previousDamage: causes.has('damaged') ? 'index checksum mismatch' : null,
      current: causes.has('noSnapshot')
        ? null
        : {
            generationId: causes.has('generation') ? GEN_B : GEN_A,
            snapNumber: causes.has('number') ? 5 : 8,
            blockSize: causes.has('blocks') ? 131072 : 65536,
            blockCount: causes.has('blocks') ? 8192 : 16384,
          },
      deviceSize: causes.has('size') ? 3 * GiB : GiB,
      chunkSize: causes.has('chunk') ? 8 * MiB : 4 * MiB,
    };
  }

  test('every pair of causes: the reason names the earlier one in the order above', () => {
    for (let i = 0; i < ORDER.length; i++) {
      for (let j = i + 1; j < ORDER.length; j++) {
        const first = ORDER[i]!;
        const second = ORDER[j]!;
        const r = digestReason(chooseIncrementalMethod(build(new Set([first, second]))));
        assert.match(r, NAMES[first], `${first}+${second}: ${r}`);
        assert.doesNotMatch(r, NAMES[second], `${first}+${second} names ${second} too: ${r}`);
      }
    }
  });

  test('each cause alone is named by its own words and no other cause\'s', () => {
    for (const c of ORDER) {
      const r = digestReason(chooseIncrementalMethod(build(new Set([c]))));
      for (const o of ORDER) {
        if (o === c) assert.match(r, NAMES[o], `${c}: ${r}`);
        else assert.doesNotMatch(r, NAMES[o], `${c} alone, but the reason reads like ${o}: ${r}`);
      }
    }
    assert.equal(chooseIncrementalMethod(build(new Set())).mode, 'cbt');
  });
});

describe('chooseIncrementalMethod: property', () => {
  /** My statement of the rule, written from the doc and not from the code. */
  function shouldUseCbt(c: ChainInput): boolean {
    if (c.current === null || c.previous === null || c.previousDamage !== null) return false;
    const p = c.previous;
    const b = p.cbt;
    return (
      p.device.size === c.deviceSize &&
      p.chunkSize === c.chunkSize &&
      b !== null &&
      b.generationId === c.current.generationId &&
      c.current.snapNumber > b.snapNumber &&
      b.blockSize === c.current.blockSize &&
      b.blockCount === c.current.blockCount
    );
  }

  test('random inputs (seeded, 5000 cases over small domains): cbt iff every condition holds', () => {
    const r = rng(0xc0ffee);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const sizes = [GiB, 2 * GiB];
    const chunks = [4 * MiB, 8 * MiB];
    const gens = [GEN_A, GEN_B];
    const nums = [1, 2, 3, 7, 8, 200, 254, 255];
    const bsizes = [65536, 131072];
    const bcounts = [8192, 16384];
    const seen = { cbt: 0, digest: 0 };
    for (let i = 0; i < 5000; i++) {
      // bias towards valid inputs so both outcomes are well represented
      const ok = r() < 0.5;
      const prevCbt: CbtState | null = r() < 0.1 ? null : { generationId: pick(gens), snapNumber: pick(nums), blockSize: pick(bsizes), blockCount: pick(bcounts) };
      const prevSize = pick(sizes);
      const prevChunk = pick(chunks);
      const c: ChainInput = {
        previous: r() < 0.1 ? null : header({ size: prevSize, chunkSize: prevChunk, cbt: prevCbt }),
        previousDamage: r() < 0.1 ? 'pack missing' : null,
        current:
          r() < 0.1
            ? null
            : ok && prevCbt
              ? { ...prevCbt, snapNumber: Math.min(255, prevCbt.snapNumber + 1 + Math.floor(r() * 3)) }
              : { generationId: pick(gens), snapNumber: pick(nums), blockSize: pick(bsizes), blockCount: pick(bcounts) },
        deviceSize: ok ? prevSize : pick(sizes),
        chunkSize: ok ? prevChunk : pick(chunks),
      };
      const m = chooseIncrementalMethod(c);
      const want = shouldUseCbt(c);
      assert.equal(m.mode, want ? 'cbt' : 'digest', `case ${i}: ${JSON.stringify(c)} → ${JSON.stringify(m)}`);
      if (m.mode === 'cbt') assert.equal(m.reason, null);
      else assert.ok(typeof m.reason === 'string' && m.reason.length > 0);
      seen[m.mode]++;
    }
    assert.ok(seen.cbt > 300 && seen.digest > 300, JSON.stringify(seen));
  });

  test('does not modify its input', () => {
    const c = valid();
    const copy = structuredClone(c);
    chooseIncrementalMethod(c);
    chooseIncrementalMethod({ ...c, current: { ...c.current!, generationId: GEN_B } });
    assert.deepEqual(c, copy);
  });
});
