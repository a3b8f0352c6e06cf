/**
 * Executes a restore plan: ranged reads of packs (a few in flight), chunks checked, decompressed
 * and verified in workers, written at their device offsets; zero runs made cheaply. Memory is
 * bounded by the read window and the chunk buffers, not by the device.
 */
import type { Repository, BackupRef } from '../repo/repository.js';
import { packKey } from '../repo/pack.js';
import { CodecPool, SharedReads } from '../repo/codec-pool.js';
import { BufferPool, view } from '../shared/buffer-pool.js';
import { finalTargetPath, openRestoreSink, removeStalePartials, type RestoreSink } from '../device/sink.js';
import { refuseRepositoryTarget } from './repo-target.js';
import { isS3Url } from '../storage/open.js';
import { pausePoint } from '../faults.js';
import { lockRestoreTarget, refuseTargetBeingBackedUp } from './target-guard.js';
import { restorePlan, type PackRead, type PlannedChunk } from './plan.js';
import { CorruptError, InterruptedError } from '../errors.js';
import { ObjectMissingError } from '../storage/target.js';
import type { Reporter } from '../report/reporter.js';
import type { IndexHeader } from '../repo/index-file.js';
import { DamageRecorder } from '../repo/damage.js';

export interface RestoreOptions {
  repo: Repository;
  ref: BackupRef;
  to: string;
  force: boolean;
  reporter: Reporter;
  signal?: AbortSignal;
  /** Ranged reads in flight at once. */
  readAhead?: number;
  /**
   * Write zeros where a chunk cannot be read (missing or truncated pack, damaged envelope) and go
   * on; the result lists those device ranges. Otherwise the first one stops the restore.
   */
  ignoreErrors?: boolean;
  /** Registers work that must happen even if bkp has to exit at once (removing the partial image). */
  onCleanup?: (fn: () => Promise<void>) => void;
}

/** Device bytes a restore could not recover (written as zeros under ignoreErrors). */
export interface DamagedRange {
  offset: number;
  length: number;
  problem: string;
}

export interface RestoreResult {
  header: IndexHeader;
  to: string;
  bytes: number;
  bytesFetched: number;
  zeroBytes: number;
  durationMs: number;
  /** In device order, neighbours with the same problem merged; empty unless ignoreErrors. */
  damaged: DamagedRange[];
}

export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const index = await opts.repo.readIndex(opts.ref);
  const { header } = index;
  const size = header.device.size;
  const ops = restorePlan(index);
  const final = await finalTargetPath(opts.to);
  if (!isS3Url(opts.repo.target.location)) await refuseRepositoryTarget(opts.repo.target.location, opts.to, final);
  await refuseTargetBeingBackedUp(opts.to);
  const targetLock = await lockRestoreTarget(opts.to, final, (m) => opts.reporter.warn(m));
  let sink: Awaited<ReturnType<typeof openRestoreSink>>;
  try {
    if (targetLock.pathLocked) {
      for (const p of await removeStalePartials(final)) opts.reporter.warn(`removed ${p}, the partial image of a restore that did not end`);
    }
    sink = await openRestoreSink(opts.to, size, opts.force);
  } catch (e) {
    await targetLock.release();
    throw e;
  }
  opts.onCleanup?.(async () => {
    await sink.discard();
    await targetLock.release();
  });
  const pool = new CodecPool();
  const buffers = new BufferPool(header.chunkSize, pool.size * 4);
  // patches are written over their bases: the bar counts both
  let patchBytes = 0;
  for (let i = 0; i < index.entries.length; i++) if (index.entries.hasPatch(i)) patchBytes += index.entries.refPlain(2 * i + 1);
  const phase = opts.reporter.phase(`restore ${header.device.path} (${header.backupId}) to ${opts.to}`, size + patchBytes);
  let done = 0;
  let bytesFetched = 0;
  let zeroBytes = 0;
  const progress = (n: number) => {
    done += n;
    phase.update(done);
  };
  const damaged: DamagedRange[] = [];
  // with ignoreErrors, an unreadable chunk becomes zeros and a line in the result
  const onDamage = opts.ignoreErrors
    ? async (offset: number, length: number, problem: string) => {
        damaged.push({ offset, length, problem });
        // a lost patch lies over a base already written: its bytes must not stay
        await sink.zero(offset, length, { overwrite: true });
        progress(length);
      }
    : undefined;
  // a damaged chunk is recorded in the repository, so that no new backup builds on it
  const recorder = new DamageRecorder(opts.repo.target, 'restore', (m) => opts.reporter.warn(m));
  let ok = false;
  try {
    await pausePoint('restore-writing');
    const window = new Set<Promise<void>>();
    let failure: unknown;
    const readAhead = opts.readAhead ?? 4;
    const reads = new SharedReads(readAhead);
    for (const op of ops) {
      if (failure) break;
      if (opts.signal?.aborted) {
        failure = new InterruptedError('interrupted');
        break;
      }
      if (op.kind === 'barrier') {
        // the patches go over bases that must be on the target first (the window never rejects)
        await Promise.all(window);
        continue;
      }
      while (window.size >= readAhead) await Promise.race(window);
      // zero runs share the window with reads: awaiting each BLKZEROOUT here would stop the
      // reads from being issued meanwhile
      const work =
        op.kind === 'zero'
          ? sink.zero(op.offset, op.length).then(() => {
              zeroBytes += op.length;
              progress(op.length);
            })
          : restoreRead(opts.repo, op, sink, pool, buffers, reads, progress, recorder, onDamage).then((n) => {
              bytesFetched += n;
            });
      const p: Promise<void> = work
        .catch((e: unknown) => {
          failure ??= e;
        })
        .finally(() => window.delete(p));
      window.add(p);
    }
    await Promise.all(window);
    if (failure) throw failure;
    await sink.sync();
    await sink.commit();
    ok = true;
  } catch (e) {
    if (sink.kind === 'block' && e instanceof Error) e.message += `; ${opts.to} now holds a partial image: restore again before using it`;
    throw e;
  } finally {
    await pool.close();
    await sink.close();
    await targetLock.release();
    if (ok) phase.done();
  }
  return { header, to: opts.to, bytes: size, bytesFetched, zeroBytes, durationMs: Date.now() - started, damaged: mergeRanges(damaged) };
}

/** What a restore stopped by a signal leaves at its target, for the line bkp ends with. */
export function restoreStopNote(to: string, kind: 'block' | 'file'): string {
  return kind === 'block'
    ? `the restore did not finish: ${to} now holds a partial image; restore again before using it`
    : `the restore did not finish: no image was written to ${to} (a file that was there is left as it was); run the same command again`;
}

/**
 * The device bytes of some chunks, for a message: the first contiguous range and how many more
 * there are (a pack read may hold chunks that are not neighbours on the device).
 */
function rangesText(chunks: readonly PlannedChunk[]): string {
  const ranges: Array<{ offset: number; end: number }> = [];
  for (const t of chunks.flatMap(lostRuns).sort((a, b) => a.offset - b.offset)) {
    const last = ranges[ranges.length - 1];
    if (last && last.end === t.offset) last.end += t.length;
    else ranges.push({ offset: t.offset, end: t.offset + t.length });
  }
  const r = ranges[0]!;
  return `${deviceBytes(r.offset, r.end - r.offset)}${ranges.length > 1 ? ` and ${ranges.length - 1} more range(s)` : ''}`;
}

function mergeRanges(ranges: DamagedRange[]): DamagedRange[] {
  const out: DamagedRange[] = [];
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === r.offset && last.problem === r.problem) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}

const deviceBytes = (offset: number, length: number) => `device bytes ${offset}-${offset + length - 1}`;

/** Where a planned chunk's plaintext goes on the device: the whole region, or a patch's runs. */
const deviceRuns = (c: PlannedChunk): Array<{ offset: number; length: number }> => c.runs ?? [{ offset: c.deviceOffset, length: c.plainLength }];

/** The device bytes lost when a planned chunk cannot be read: a base under a patch loses only what the patch does not cover. */
const lostRuns = (c: PlannedChunk): Array<{ offset: number; length: number }> => c.uncovered ?? deviceRuns(c);

async function restoreRead(
  repo: Repository,
  op: PackRead,
  sink: RestoreSink,
  pool: CodecPool,
  buffers: BufferPool,
  reads: SharedReads,
  progress: (n: number) => void,
  recorder: DamageRecorder,
  onDamage?: (offset: number, length: number, problem: string) => Promise<void>,
): Promise<number> {
  const key = packKey(op.packId);
  // read straight into memory the workers read in place; it goes back once every chunk settled
  const shared = reads.acquire(op.length);
  try {
    let data: Buffer;
    try {
      data = await repo.target.get(key, { offset: op.offset, length: op.length }, new Uint8Array(shared, 0, op.length));
    } catch (e) {
      if (!(e instanceof ObjectMissingError)) throw e;
      const problem = `pack ${op.packId} is missing`;
      if (!onDamage) throw new CorruptError(`${problem}: ${rangesText(op.chunks)} cannot be restored`);
      for (const c of op.chunks) for (const t of lostRuns(c)) await onDamage(t.offset, t.length, problem);
      return 0;
    }
    if (data.length !== op.length) {
      // the pack ends early: the chunks whose envelopes lie past its end are lost
      const lost = op.chunks.filter((c) => c.at + c.length > data.length);
      const problem = `pack ${op.packId} is truncated (${op.offset + data.length} bytes, needs ${op.offset + op.length})`;
      for (const c of lost) await recorder.record({ packId: op.packId, offset: op.offset + c.at, length: c.length, chunkId: c.id.toString('hex'), problem: `pack cut short at ${op.offset + data.length} bytes` });
      if (!onDamage) throw new CorruptError(`${problem}: ${rangesText(lost)} cannot be restored`);
      for (const c of lost) for (const t of lostRuns(c)) await onDamage(t.offset, t.length, problem);
    }
    // every chunk settles before the bytes go back for another read: a worker may still read them
    const settled = await Promise.allSettled(
      op.chunks.map(async (c) => {
        if (c.at + c.length > data.length) return; // lost above
        const dest = await buffers.acquire();
        const r = await pool.open(shared, c.at, c.length, dest.ab, dest.offset, c.id, c.plainLength).catch((e: unknown) => {
          buffers.abort(e); // the buffer died with the worker: wake the chunks waiting for one
          throw e;
        });
        try {
          if (r.error) {
            await recorder.record({ packId: op.packId, offset: op.offset + c.at, length: c.length, chunkId: c.id.toString('hex'), problem: r.error });
            const problem = `chunk ${c.id.toString('hex').slice(0, 16)} in pack ${op.packId} is damaged (${r.error})`;
            if (!onDamage) throw new CorruptError(`${problem}: ${rangesText([c])}`);
            for (const t of lostRuns(c)) await onDamage(t.offset, t.length, problem);
            return;
          }
          const plain = view({ ab: r.dest, offset: dest.offset }, c.plainLength);
          let at = 0;
          for (const t of deviceRuns(c)) {
            await sink.write(plain.subarray(at), t.length, t.offset);
            at += t.length;
          }
          progress(c.plainLength);
        } finally {
          buffers.release(r.dest);
        }
      }),
    );
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return data.length;
  } finally {
    reads.release(shared);
  }
}
