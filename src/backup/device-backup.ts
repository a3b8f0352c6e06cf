/**
 * Backs up one device: reads the planned chunks from a BlockSource, has workers hash and seal
 * them, stores new ones in packs, and commits a complete index. Chunks not read are taken from
 * the parent index (an incremental); every chunk read replaces the parent's entry.
 */
import type { BlockSource } from '../device/source.js';
import type { CodecPool, SealResult } from '../repo/codec-pool.js';
import type { PackWriter } from '../repo/pack-writer.js';
import type { Repository } from '../repo/repository.js';
import { IndexEntries, type BackupIndex, type BackupStats, type CbtState, type DeviceIdentity, type IndexHeader } from '../repo/index-file.js';
import pLimit from 'p-limit';
import { BufferPool, view, type PoolBuffer } from '../shared/buffer-pool.js';
import { chunkCount, chunkRange } from './plan.js';
import { BkpError, InterruptedError } from '../errors.js';
import { TOOL_VERSION } from '../version.js';
import { crashPoint, pausePoint } from '../faults.js';

export interface DeviceBackupRequest {
  repo: Repository;
  pool: CodecPool;
  writer: PackWriter;
  source: BlockSource;
  identity: DeviceIdentity;
  backupId: string;
  kind: 'full' | 'incr';
  method: IndexHeader['method'];
  /** The previous backup of this device: unread chunks come from it, read ones use it as a hint. */
  parent: BackupIndex | null;
  /**
   * Packs known to be damaged: the parent's chunks stored there are read again from the device
   * (an incremental would otherwise inherit them) and stored anew, never matched by the hint.
   */
  damagedPacks?: ReadonlySet<string>;
  /** Chunks to read, ascending; undefined = all. */
  chunks?: readonly number[];
  snapshot: boolean;
  cbt: CbtState | null;
  time: Date;
  /** The header's lastFullTime (src/backup/schedule.ts carriedLastFullTime). */
  lastFullTime: string | null;
  compressionLevel: number;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  /** Called after all data is stored, just before the commit: throw to refuse the commit. */
  beforeCommit?: () => void | Promise<void>;
}

export interface DeviceBackupResult {
  index: BackupIndex;
  stats: BackupStats;
  /** Chunks of the parent stored in damaged packs, read again from the device and stored anew. */
  damagedReread: number;
}

export async function backupDevice(req: DeviceBackupRequest): Promise<DeviceBackupResult> {
  const started = Date.now();
  const { repo, pool, writer, source, identity } = req;
  const chunkSize = repo.config.chunkSize;
  const size = identity.size;
  const n = chunkCount(size, chunkSize);
  const parent = req.parent && req.parent.header.chunkSize === chunkSize && req.parent.header.device.size === size ? req.parent : null;
  if (req.kind === 'incr' && req.chunks && !parent) throw new Error('an incremental that reads only some chunks needs its parent');

  // An incremental starts as a copy of its parent (same pack table, so the same ordinals); every
  // chunk read then replaces its entry. A full starts empty and sets every entry.
  const packs: string[] = parent ? [...parent.packs] : [];
  const packOrdinals = new Map<string, number>(packs.map((p, o) => [p, o]));
  const ordinal = (packId: string): number => {
    let o = packOrdinals.get(packId);
    if (o === undefined) {
      o = packs.length;
      packs.push(packId);
      packOrdinals.set(packId, o);
    }
    return o;
  };
  const entries = parent ? parent.entries.clone() : IndexEntries.alloc(n);
  const building = { entries, packs };
  const stats: BackupStats = { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0, durationMs: 0 };

  const inDamaged = parentInDamagedPacks(parent, req.damagedPacks);
  const toRead: Iterable<number> = req.chunks && inDamaged.length ? mergeSorted(req.chunks, inDamaged) : (req.chunks ?? everyChunk(n));
  const damagedSet = new Set(inDamaged);
  const bufferCount = pool.size * 4;
  const buffers = new BufferPool(chunkSize, bufferCount);
  /** Chunks read but not yet applied: their envelopes (at most ~32 MiB) wait in memory. */
  const maxPending = Math.max(bufferCount, Math.floor((32 * 1024 * 1024) / chunkSize));
  let failure: unknown;
  let chain: Promise<void> = Promise.resolve();
  const inflight = new Set<Promise<void>>();

  const handle = async (i: number, r: SealResult, length: number): Promise<void> => {
    if (r.zero) {
      entries.setZero(i, length);
      stats.chunksZero++;
      return;
    }
    const id = r.id!;
    if (!r.envelope) {
      // the worker saw the parent's id: same chunk at the same place, and the entry copied from
      // the parent says where it is
      stats.chunksReused++;
      return;
    }
    const map = await repo.chunkMap();
    const loc = map.get(id);
    if (loc) {
      entries.setData(i, ordinal(loc.packId), loc.offset, loc.length, length, id);
      stats.chunksReused++;
    } else {
      const stored = await writer.add(id, r.envelope, length);
      entries.setData(i, ordinal(stored.packId), stored.offset, stored.length, length, id);
      map.addEntry(building, i); // later chunks, and the run's other devices, find it here
      stats.chunksNew++;
      stats.bytesStored += r.envelope.length;
    }
  };

  let done = 0;
  // two reads in flight keep the device busy while the previous chunk is being handed over
  const reads = pLimit(2);
  const readChunk = async (pb: PoolBuffer, offset: number, length: number): Promise<void> => {
    let got: number;
    try {
      got = await source.read(view(pb, length), length, offset);
    } catch (e) {
      throw readError(e, source.path, offset);
    }
    if (got !== length) throw new BkpError(`short read from ${source.path} at byte ${offset + got}: the device shrank during the backup`, 1);
  };
  for (const i of toRead) {
    if (failure) break;
    if (req.signal?.aborted) {
      failure = new InterruptedError('interrupted');
      break;
    }
    const { offset, length } = chunkRange(i, size, chunkSize);
    // buffers come back as soon as a worker has sealed them (a slow worker does not hold up
    // the others); what waits for its turn is bounded here
    while (inflight.size >= maxPending) await Promise.race(inflight);
    let pb: PoolBuffer;
    try {
      pb = await buffers.acquire();
    } catch {
      break;
    }
    const hint = parent && parent.entries.isData(i) && !damagedSet.has(i) ? parent.entries.id(i) : undefined;
    const sealed: Promise<SealResult | undefined> = reads(() => (failure ? Promise.reject(failure) : readChunk(pb, offset, length))).then(
      () => {
        stats.bytesRead += length;
        return pool.seal(pb.ab, pb.offset, length, req.compressionLevel, hint).then(
          (r) => {
            buffers.release(r.buf); // the envelope is a buffer of its own
            return r;
          },
          (e: unknown) => {
            failure ??= e;
            buffers.abort(e); // the buffer died with the worker: wake the reader
            return undefined;
          },
        );
      },
      (e: unknown) => {
        buffers.release(pb.ab);
        failure ??= e;
        return undefined;
      },
    );
    // Results are applied one at a time and in device order (the link is made here, in reading
    // order, not when a worker answers): envelopes then lie in packs in device order, and a
    // restore reads each pack front to back in a few large reads instead of one per chunk. The
    // chain itself never rejects.
    chain = chain
      .then(() => sealed)
      .then((r) => {
        if (r && !failure) return handle(i, r, length);
      })
      .catch((e: unknown) => {
        failure ??= e;
      });
    const p: Promise<void> = chain.finally(() => {
      inflight.delete(p);
      done += length;
      req.onProgress?.(done);
    });
    inflight.add(p);
  }
  await Promise.all(inflight);
  await chain;
  if (failure) throw failure;

  await writer.flush();
  stats.durationMs = Date.now() - started;
  const header: IndexHeader = {
    formatVersion: 1,
    backupId: req.backupId,
    kind: req.kind,
    device: identity,
    time: req.time.toISOString(),
    toolVersion: TOOL_VERSION,
    chunkSize,
    parent: req.kind === 'incr' && parent ? parent.header.backupId : null,
    lastFullTime: req.lastFullTime,
    snapshot: req.snapshot,
    cbt: req.cbt,
    method: req.method,
    stats,
  };
  const index: BackupIndex = compactPacks({ header, packs, entries });
  await pausePoint('chunks-stored');
  await req.beforeCommit?.();
  if (req.signal?.aborted) throw new InterruptedError('interrupted');
  crashPoint('before-commit');
  await repo.commitIndex(index);
  crashPoint('after-commit');
  return { index, stats, damagedReread: inDamaged.length };
}

/** Positions of the parent's data entries stored in a damaged pack, ascending. */
export function parentInDamagedPacks(parent: BackupIndex | null, damaged: ReadonlySet<string> | undefined): number[] {
  if (!parent || !damaged || damaged.size === 0 || !parent.packs.some((p) => damaged.has(p))) return [];
  const out: number[] = [];
  const t = parent.entries;
  for (let i = 0; i < t.length; i++) if (t.isData(i) && damaged.has(parent.packs[t.packOrdinal(i)]!)) out.push(i);
  return out;
}

/** The union of two ascending lists, ascending, each position once. */
export function mergeSorted(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!;
    if (out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

function* everyChunk(n: number): Generator<number> {
  for (let i = 0; i < n; i++) yield i;
}

function readError(e: unknown, path: string, offset: number): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EIO') return new BkpError(`I/O error reading ${path} at byte ${offset}`, 1, { cause: e });
  return e;
}

/**
 * Renumbers the pack table as docs/format.md wants it: the packs data entries use, each once, in
 * the order of first use (this drops the parent's packs whose chunks were all replaced). In place,
 * table and pack list together: the chunk map reads locations from both.
 */
export function compactPacks(index: BackupIndex): BackupIndex {
  const { entries } = index;
  const used = new Map<string, number>(); // by pack id: a parent that lists a pack twice gets one ordinal
  const packs: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    if (!entries.isData(i)) continue;
    const was = entries.packOrdinal(i);
    const packId = index.packs[was]!;
    let o = used.get(packId);
    if (o === undefined) {
      o = packs.length;
      packs.push(packId);
      used.set(packId, o);
    }
    if (o !== was) entries.setPackOrdinal(i, o);
  }
  // the same array, changed in place (no spread into a call: it may hold 100,000s of packs)
  index.packs.length = 0;
  for (const p of packs) index.packs.push(p);
  return index;
}
