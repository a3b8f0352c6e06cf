/**
 * Backs up one device: reads the planned regions (or only their changed pieces) from a
 * BlockSource, has workers hash and seal them, stores new chunks in packs, and commits a complete
 * index. Regions not read are taken from the parent index (an incremental); a region read whole
 * replaces the parent's entry, a patch replaces only the parent's patch.
 */
import type { BlockSource } from '../device/source.js';
import type { CodecPool, SealResult } from '../repo/codec-pool.js';
import type { PackWriter } from '../repo/pack-writer.js';
import type { Repository } from '../repo/repository.js';
import { IndexEntries, INDEX_VERSION, pieceSizeFor, type BackupIndex, type BackupStats, type CbtState, type DeviceIdentity, type IndexHeader } from '../repo/index-file.js';
import { RegionReader } from '../repo/region-reader.js';
import { DamageRecorder } from '../repo/damage.js';
import { differingPieces, planRegion, regionCount, regionLength, type ByteRun, type RegionGeometry } from './region-plan.js';
import pLimit from 'p-limit';
import { BufferPool, type PoolBuffer } from '../shared/buffer-pool.js';
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
  /** The previous backup of this device: unread regions come from it, read ones use it as a hint. */
  parent: BackupIndex | null;
  /**
   * CBT: the pieces the kernel marked, by region (regions not named are unchanged); each marked
   * region is read and stored as a patch or whole by the region plan. Undefined: every region is
   * read whole.
   */
  marked?: ReadonlyMap<number, bigint>;
  /**
   * Digest fallback: a region read whole that differs from the parent is compared with the
   * parent's stored content, and only the pieces that changed are stored (as a patch).
   */
  comparePieces?: boolean;
  /**
   * Packs known to be damaged: the parent's regions with a chunk stored there are read again whole
   * from the device (an incremental would otherwise inherit them) and stored anew, never matched
   * by the hint nor compared with the parent.
   */
  damagedPacks?: ReadonlySet<string>;
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
  /** Warnings (damage of the parent's chunks found while comparing with them). */
  warn?: (message: string) => void;
}

export interface DeviceBackupResult {
  index: BackupIndex;
  stats: BackupStats;
  /** Chunks of the parent stored in damaged packs, read again from the device and stored anew. */
  damagedReread: number;
}

/** What to read of one region and how to store it. */
type RegionJob = { i: number; kind: 'whole'; runs: ByteRun[] } | { i: number; kind: 'patch'; mask: bigint; runs: ByteRun[] };

export async function backupDevice(req: DeviceBackupRequest): Promise<DeviceBackupResult> {
  const started = Date.now();
  const { repo, pool, writer, source, identity } = req;
  const chunkSize = repo.config.chunkSize;
  const size = identity.size;
  const g: RegionGeometry = { deviceSize: size, regionSize: chunkSize, pieceSize: pieceSizeFor(chunkSize) };
  const n = regionCount(g);
  const p = req.parent;
  const parent = p && p.header.chunkSize === chunkSize && p.header.pieceSize === g.pieceSize && p.header.device.size === size ? p : null;
  if (req.marked && !parent) throw new Error('an incremental that reads only some regions needs its parent');

  // An incremental starts as a copy of its parent (same pack table, so the same ordinals); every
  // region read then replaces its base or patch. A full starts empty and sets every entry.
  const packs: string[] = parent ? [...parent.packs] : [];
  const packOrdinals = new Map<string, number>(packs.map((id, o) => [id, o]));
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
  const damagedSet = new Set(inDamaged);
  const jobs: Iterable<RegionJob> = req.marked ? cbtJobs(g, parent!, req.marked, inDamaged) : wholeJobs(g);
  const bufferCount = pool.size * 4;
  const buffers = new BufferPool(chunkSize, bufferCount);
  /** Regions read but not yet applied: their envelopes (at most ~32 MiB) wait in memory. */
  const maxPending = Math.max(bufferCount, Math.floor((32 * 1024 * 1024) / chunkSize));
  const compare = req.comparePieces && parent ? new PieceCompare(repo, pool, parent, g, req.compressionLevel, new DamageRecorder(repo.target, 'backup', req.warn ?? (() => {})), req.warn ?? (() => {})) : undefined;
  let failure: unknown;
  let chain: Promise<void> = Promise.resolve();
  const inflight = new Set<Promise<void>>();

  /** Points ref `r` of region `i` at a stored copy of the chunk: an existing one, or a new one. */
  const store = async (r: number, id: Buffer, envelope: Buffer, plainLength: number, mask: bigint): Promise<void> => {
    const map = await repo.chunkMap();
    const set = (packId: string, offset: number, length: number) => {
      const i = r >>> 1;
      if (r & 1) entries.setPatch(i, mask, ordinal(packId), offset, length, plainLength, id);
      else entries.setData(i, ordinal(packId), offset, length, plainLength, id);
    };
    const loc = map.get(id);
    if (loc) {
      set(loc.packId, loc.offset, loc.length);
      stats.chunksReused++;
    } else {
      const stored = await writer.add(id, envelope, plainLength);
      set(stored.packId, stored.offset, stored.length);
      map.addRef(building, r); // later chunks, and the run's other devices, find it here
      stats.chunksNew++;
      stats.bytesStored += envelope.length;
    }
  };

  const handle = async (job: RegionJob, r: SealResult, got: number, bytes: Buffer | undefined): Promise<void> => {
    const { i } = job;
    if (job.kind === 'patch') {
      if (r.zero && !entries.baseIsData(i)) {
        // zeros over a zero base: the region is zeros
        entries.setZero(i, regionLength(g, i));
        stats.chunksZero++;
        return;
      }
      return store(2 * i + 1, r.id!, r.envelope!, got, job.mask);
    }
    const length = regionLength(g, i);
    if (r.zero) {
      entries.setZero(i, length);
      stats.chunksZero++;
      return;
    }
    if (!r.envelope) {
      // the worker saw the parent's id: same region content, and the entry copied from the
      // parent (a base without patch) says where it is
      stats.chunksReused++;
      return;
    }
    if (compare && bytes) {
      const patch = await compare.patch(i, bytes);
      if (patch === 'same') {
        stats.chunksReused++;
        return;
      }
      if (patch) return store(2 * i + 1, patch.id, patch.envelope, patch.plainLength, patch.mask);
    }
    return store(2 * i, r.id!, r.envelope, length, 0n);
  };

  let done = 0;
  // two reads in flight keep the device busy while the previous region is being handed over
  const reads = pLimit(2);
  const readRuns = async (pb: PoolBuffer, runs: readonly ByteRun[]): Promise<number> => {
    let at = 0;
    for (const run of runs) {
      let got: number;
      try {
        got = await source.read(Buffer.from(pb.ab, pb.offset + at, run.length), run.length, run.offset);
      } catch (e) {
        throw readError(e, source.path, run.offset);
      }
      if (got !== run.length) throw new BkpError(`short read from ${source.path} at byte ${run.offset + got}: the device shrank during the backup`, 1);
      at += run.length;
    }
    return at;
  };
  for (const job of jobs) {
    if (failure) break;
    if (req.signal?.aborted) {
      failure = new InterruptedError('interrupted');
      break;
    }
    const { i } = job;
    // buffers come back as soon as a worker has sealed them (a slow worker does not hold up
    // the others); what waits for its turn is bounded here
    while (inflight.size >= maxPending) await Promise.race(inflight);
    let pb: PoolBuffer;
    try {
      pb = await buffers.acquire();
    } catch {
      break;
    }
    const pe = parent?.entries;
    const trusted = !damagedSet.has(i); // the parent's copy of a region in a damaged pack is neither a hint nor compared
    const hint = job.kind === 'whole' && trusted && pe && pe.baseIsData(i) && !pe.hasPatch(i) ? pe.refId(2 * i) : undefined;
    // a region the digest fallback may compare with its parent keeps its bytes until handled
    const keep = compare !== undefined && trusted;
    let length = 0;
    const sealed: Promise<{ r: SealResult; bytes?: Buffer } | undefined> = reads(() => (failure ? Promise.reject(failure) : readRuns(pb, job.runs))).then(
      (got) => {
        length = got;
        stats.bytesRead += got;
        return pool.seal(pb.ab, pb.offset, got, req.compressionLevel, hint, job.kind === 'patch').then(
          (r) => {
            if (!keep || !r.envelope) {
              buffers.release(r.buf); // the envelope is a buffer of its own
              return { r };
            }
            return { r, bytes: Buffer.from(r.buf, pb.offset, got) };
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
      .then(async (s) => {
        if (!s) return;
        try {
          if (!failure) await handle(job, s.r, length, s.bytes);
        } finally {
          if (s.bytes) buffers.release(s.bytes.buffer as ArrayBuffer);
        }
      })
      .catch((e: unknown) => {
        failure ??= e;
      });
    const c: Promise<void> = chain.finally(() => {
      inflight.delete(c);
      done += length;
      req.onProgress?.(done);
    });
    inflight.add(c);
  }
  await Promise.all(inflight);
  await chain;
  if (failure) throw failure;

  await writer.flush();
  stats.durationMs = Date.now() - started;
  const header: IndexHeader = {
    formatVersion: INDEX_VERSION,
    backupId: req.backupId,
    kind: req.kind,
    device: identity,
    time: req.time.toISOString(),
    toolVersion: TOOL_VERSION,
    chunkSize,
    pieceSize: g.pieceSize,
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

/** Regions of the parent with a chunk (base or patch) stored in a damaged pack, ascending. */
export function parentInDamagedPacks(parent: BackupIndex | null, damaged: ReadonlySet<string> | undefined): number[] {
  if (!parent || !damaged || damaged.size === 0 || !parent.packs.some((p) => damaged.has(p))) return [];
  const out: number[] = [];
  const t = parent.entries;
  for (let r = 0; r < t.length * 2; r++) {
    if (t.hasRef(r) && damaged.has(parent.packs[t.refPack(r)]!) && out[out.length - 1] !== r >>> 1) out.push(r >>> 1);
  }
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

function* wholeJobs(g: RegionGeometry): Generator<RegionJob> {
  const n = regionCount(g);
  for (let i = 0; i < n; i++) yield { i, kind: 'whole', runs: [{ offset: i * g.regionSize, length: regionLength(g, i) }] };
}

/** The CBT jobs: each marked region as the region plan says; a region in `reread` (ascending) whole. */
function* cbtJobs(g: RegionGeometry, parent: BackupIndex, marked: ReadonlyMap<number, bigint>, reread: readonly number[]): Generator<RegionJob> {
  const whole = new Set(reread);
  for (const i of mergeSorted([...marked.keys()].sort((a, b) => a - b), reread)) {
    const m = marked.get(i);
    const action = m === undefined || whole.has(i) ? undefined : planRegion(g, i, parent.entries.patchMask(i), m);
    yield action?.kind === 'patch' ? { i, kind: 'patch', mask: action.mask, runs: action.runs } : { i, kind: 'whole', runs: [{ offset: i * g.regionSize, length: regionLength(g, i) }] };
  }
}

/**
 * The digest fallback's piece comparison: a region read whole whose id differs from its parent's
 * is compared with what the parent stored there; when few pieces changed, they are sealed as a
 * patch over the parent's base. A parent region that cannot be read back is not trusted: the
 * region is then stored whole.
 */
class PieceCompare {
  private readonly reader: RegionReader;
  private readonly scratch: BufferPool;

  constructor(
    repo: Repository,
    private readonly pool: CodecPool,
    private readonly parent: BackupIndex,
    private readonly g: RegionGeometry,
    private readonly level: number,
    private readonly damage: DamageRecorder,
    private readonly warn: (message: string) => void,
  ) {
    this.reader = new RegionReader(repo, pool, parent);
    this.scratch = new BufferPool(g.regionSize, 2);
  }

  /** 'same' when nothing changed, a sealed patch, or undefined to store the region whole. */
  async patch(i: number, bytes: Buffer): Promise<'same' | { mask: bigint; id: Buffer; envelope: Buffer; plainLength: number } | undefined> {
    const pe = this.parent.entries;
    // buffers that go to a worker are ours again only when it answers: one lost with a dead
    // worker is not given back (the run fails anyway)
    const held: ArrayBuffer[] = [];
    const hold = (b: PoolBuffer) => (held.push(b.ab), b);
    const lend = (ab: ArrayBuffer) => held.splice(held.indexOf(ab), 1);
    try {
      const old = hold(await this.scratch.acquire());
      let changed: bigint;
      if (pe.isZero(i)) {
        changed = differingPieces(this.g, i, bytes, zerosOf(bytes.length));
      } else {
        lend(old.ab);
        const got = await this.reader.read(i, old.ab, old.offset);
        held.push(got.buf);
        if (got.error) {
          // not trusted: the region is stored whole, and no new backup builds on that chunk
          const r = got.ref!;
          const packId = this.parent.packs[pe.refPack(r)]!;
          this.warn(`the previous backup's copy of device bytes ${i * this.g.regionSize}+ is damaged (${got.error}): stored anew, and recorded under damage/`);
          await this.damage.record({ packId, offset: pe.refOffset(r), length: pe.refLength(r), chunkId: pe.refId(r).toString('hex'), problem: got.error });
          return undefined;
        }
        changed = differingPieces(this.g, i, bytes, new Uint8Array(got.buf, old.offset, bytes.length));
      }
      if (changed === 0n) return 'same';
      const action = planRegion(this.g, i, pe.patchMask(i), changed);
      if (action.kind === 'whole') return undefined;
      // the patch: the region's current bytes at every piece of the union, in order
      const pb = hold(await this.scratch.acquire());
      let at = 0;
      for (const run of action.runs) {
        const from = run.offset - i * this.g.regionSize;
        bytes.copy(Buffer.from(pb.ab, pb.offset + at, run.length), 0, from, from + run.length);
        at += run.length;
      }
      lend(pb.ab);
      const r = await this.pool.seal(pb.ab, pb.offset, at, this.level, undefined, true);
      held.push(r.buf);
      return { mask: action.mask, id: r.id!, envelope: r.envelope!, plainLength: at };
    } finally {
      for (const ab of held) this.scratch.release(ab);
    }
  }
}

let zeroBlock = Buffer.alloc(0);
function zerosOf(n: number): Buffer {
  if (zeroBlock.length < n) zeroBlock = Buffer.alloc(n);
  return zeroBlock.subarray(0, n);
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
  for (let r = 0; r < entries.length * 2; r++) {
    if (!entries.hasRef(r)) continue;
    const was = entries.refPack(r);
    const packId = index.packs[was]!;
    let o = used.get(packId);
    if (o === undefined) {
      o = packs.length;
      packs.push(packId);
      used.set(packId, o);
    }
    if (o !== was) entries.setRefPack(r, o);
  }
  // the same array, changed in place (no spread into a call: it may hold 100,000s of packs)
  index.packs.length = 0;
  for (const p of packs) index.packs.push(p);
  return index;
}
