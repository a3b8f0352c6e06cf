/**
 * Executes a restore plan: ranged reads of packs (a few in flight), chunks checked, decompressed
 * and verified in workers, written at their device offsets; zero runs made cheaply. Memory is
 * bounded by the read window and the chunk buffers, not by the device.
 */
import type { Repository, BackupRef } from '../repo/repository.js';
import { packKey } from '../repo/pack.js';
import { CodecPool } from '../repo/codec-pool.js';
import { BufferPool, view } from '../backup/buffer-pool.js';
import { openRestoreSink, type RestoreSink } from '../device/sink.js';
import { planRestore, type PackRead } from './plan.js';
import { CorruptError, InterruptedError } from '../errors.js';
import { ObjectMissingError } from '../storage/target.js';
import type { Reporter } from '../report/reporter.js';
import type { IndexHeader } from '../repo/index-file.js';

export interface RestoreOptions {
  repo: Repository;
  ref: BackupRef;
  to: string;
  force: boolean;
  reporter: Reporter;
  signal?: AbortSignal;
  /** Ranged reads in flight at once. */
  readAhead?: number;
}

export interface RestoreResult {
  header: IndexHeader;
  to: string;
  bytes: number;
  bytesFetched: number;
  zeroBytes: number;
  durationMs: number;
}

export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const index = await opts.repo.readIndex(opts.ref);
  const { header } = index;
  const size = header.device.size;
  const ops = planRestore(index);
  const sink = await openRestoreSink(opts.to, size, opts.force);
  const pool = new CodecPool();
  const buffers = new BufferPool(header.chunkSize, pool.size * 4);
  const phase = opts.reporter.phase(`restore ${header.device.path} (${header.backupId}) to ${opts.to}`, size);
  let done = 0;
  let bytesFetched = 0;
  let zeroBytes = 0;
  const progress = (n: number) => {
    done += n;
    phase.update(done);
  };
  let ok = false;
  try {
    const window = new Set<Promise<void>>();
    let failure: unknown;
    const readAhead = opts.readAhead ?? 4;
    for (const op of ops) {
      if (failure) break;
      if (opts.signal?.aborted) {
        failure = new InterruptedError('interrupted');
        break;
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
          : restoreRead(opts.repo, op, sink, pool, buffers, progress).then((n) => {
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
    ok = true;
  } finally {
    await pool.close();
    await sink.close();
    if (ok) phase.done();
  }
  return { header, to: opts.to, bytes: size, bytesFetched, zeroBytes, durationMs: Date.now() - started };
}

async function restoreRead(
  repo: Repository,
  op: PackRead,
  sink: RestoreSink,
  pool: CodecPool,
  buffers: BufferPool,
  progress: (n: number) => void,
): Promise<number> {
  const key = packKey(op.packId);
  let data: Buffer;
  try {
    data = await repo.target.get(key, { offset: op.offset, length: op.length });
  } catch (e) {
    if (e instanceof ObjectMissingError) {
      const first = op.chunks[0]!;
      const last = op.chunks[op.chunks.length - 1]!;
      throw new CorruptError(`pack ${op.packId} is missing: device bytes ${first.deviceOffset}-${last.deviceOffset + last.plainLength - 1} cannot be restored`);
    }
    throw e;
  }
  if (data.length !== op.length) throw new CorruptError(`pack ${op.packId} is truncated (needed bytes ${op.offset}-${op.offset + op.length - 1})`);
  await Promise.all(
    op.chunks.map(async (c) => {
      const dest = await buffers.acquire();
      const env = new Uint8Array(data.subarray(c.at, c.at + c.length)).buffer; // own buffer, to transfer
      const r = await pool.open(env, dest.ab, dest.offset, c.id, c.plainLength);
      try {
        if (r.error) {
          throw new CorruptError(
            `chunk ${c.id.toString('hex').slice(0, 16)} in pack ${op.packId} is damaged (${r.error}): device bytes ${c.deviceOffset}-${c.deviceOffset + c.plainLength - 1}`,
          );
        }
        await sink.write(view({ ab: r.dest, offset: dest.offset }, c.plainLength), c.plainLength, c.deviceOffset);
        progress(c.plainLength);
      } finally {
        buffers.release(r.dest);
      }
    }),
  );
  return data.length;
}
