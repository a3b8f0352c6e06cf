/**
 * `bkp verify`: are the backups restorable? Without --read-data: every index is intact and named
 * after what it holds, every pack it names exists, is long enough, and has a trailer that agrees
 * with the index. With --read-data: also every referenced chunk is read, decompressed and its
 * SHA-256 checked — each pack read once, however many backups share it.
 *
 * verify takes no lock. A gc that repacks meanwhile rewrites indexes and deletes the packs they
 * used to name, so a problem is only reported once the indexes involved read back unchanged:
 * when one was rewritten (or removed) since it was checked, the check runs again on what the
 * repository holds now.
 */
import type { Repository, BackupRef } from '../repo/repository.js';
import type { BackupIndex } from '../repo/index-file.js';
import { packIdFromKey, packKey, readPackTrailer, PackFormatError, type PackEntry } from '../repo/pack.js';
import { CodecPool, SharedReads } from '../repo/codec-pool.js';
import { BufferPool } from '../shared/buffer-pool.js';
import pLimit from 'p-limit';
import { BackupNotFoundError, CorruptError, ObjectArchivedError } from '../errors.js';
import { ARCHIVE_CLASSES, ObjectMissingError } from '../storage/target.js';
import { selectBackup } from '../repo/select-backup.js';
import type { Reporter } from '../report/reporter.js';
import { DamageRecorder } from '../repo/damage.js';

export interface VerifiedBackup {
  backupId: string;
  deviceKey: string;
  ok: boolean;
  problems: string[];
}

/** A pack whose own structure is damaged (its trailer); the backups using it may still restore. */
export interface DamagedPack {
  packId: string;
  problem: string;
}

export interface VerifyResult {
  backups: VerifiedBackup[];
  /** Damaged packs: the index-less recovery path (docs/format.md section 13) relies on trailers. */
  packs: DamagedPack[];
  /** Packs no index references (only when every backup is verified): orphans, or a lost index's. */
  unreferencedPacks: Array<{ packId: string; size: number }>;
  /** Backup directories that hold no index (on targets that have directories). */
  backupsWithoutIndex: string[];
  packsChecked: number;
  chunksChecked: number;
  bytesRead: number;
  /** Packs in an archive storage class whose trailers were not read (without --read-data). */
  packsArchived: number;
  /** Rounds of checks: more than 1 when a concurrent gc or prune changed an index meanwhile. */
  rounds: number;
  /** Packs found damaged (a chunk that fails its checks, or cut short): repair quarantines them. */
  damagedPacks: string[];
  /** New damage records written (docs/format.md): new backups no longer deduplicate against those packs. */
  damageRecorded: number;
}

interface Ref {
  id: Buffer;
  offset: number;
  length: number;
  plainLength: number;
  users: Set<number>;
}

/** Pack trailers read at once without --read-data (two small ranged reads each). */
const TRAILER_READS = 8;

/** How many times verify checks again after a concurrent writer changed what it checked. */
const MAX_ROUNDS = 4;

export async function runVerify(opts: { repo: Repository; backup?: string; readData: boolean; reporter: Reporter }): Promise<VerifyResult> {
  const { repo } = opts;
  let bytesRead = 0;
  let chunksChecked = 0;
  let damageRecorded = 0;
  const damagedPacks = new Set<string>();
  for (let round = 1; ; round++) {
    const r = await verifyOnce(repo, opts);
    bytesRead += r.result.bytesRead;
    chunksChecked += r.result.chunksChecked;
    damageRecorded += r.result.damageRecorded;
    for (const p of r.result.damagedPacks) damagedPacks.add(p);
    const settled = r.result.backups.every((b) => b.ok) && r.result.packs.length === 0 && !r.changed;
    // only the indexes a problem involves are read again: the others' results stand either way
    const involved = r.result.packs.length ? r.checked : r.checked.filter((c) => r.result.backups.some((b) => !b.ok && b.backupId === c.ref.backupId && b.deviceKey === c.ref.deviceKey));
    if (settled || round === MAX_ROUNDS || !(r.changed || (await changedSince(repo, involved)))) {
      return { ...r.result, bytesRead, chunksChecked, damageRecorded, damagedPacks: [...damagedPacks], rounds: round };
    }
  }
}

/** Whether any of these indexes reads back different from when it was checked (or is gone). */
async function changedSince(repo: Repository, checked: Array<{ ref: BackupRef; index: BackupIndex | null }>): Promise<boolean> {
  for (const { ref, index } of checked) {
    let now: BackupIndex;
    try {
      now = await repo.readIndex(ref);
    } catch (e) {
      if (e instanceof BackupNotFoundError) return true;
      if (e instanceof CorruptError) {
        if (index) return true;
        continue;
      }
      throw e;
    }
    if (!index || now.packs.join() !== index.packs.join() || !now.entries.table.equals(index.entries.table)) return true;
  }
  return false;
}

async function verifyOnce(
  repo: Repository,
  opts: { backup?: string; readData: boolean; reporter: Reporter },
): Promise<{ result: Omit<VerifyResult, 'rounds'>; checked: Array<{ ref: BackupRef; index: BackupIndex | null }>; changed: boolean }> {
  let refs: BackupRef[] = await repo.listBackups();
  // every device of the one backup --backup names (src/repo/select-backup.ts: latest, unique prefix)
  if (opts.backup !== undefined) refs = selectBackup(refs, opts.backup, undefined, repo.target.location);
  const results: VerifiedBackup[] = refs.map((r) => ({ backupId: r.backupId, deviceKey: r.deviceKey, ok: true, problems: [] }));
  const damage = (users: Iterable<number>, problem: string) => {
    for (const u of users) {
      results[u]!.ok = false;
      if (results[u]!.problems.length < 20) results[u]!.problems.push(problem);
    }
  };
  const damagedPacks = new Map<string, string>();
  const checked: Array<{ ref: BackupRef; index: BackupIndex | null }> = [];
  let changed = false; // an index listed a moment ago is gone: a prune ran meanwhile
  const gone = new Set<number>();

  // 1. indexes, and what each pack must hold
  const packs = new Map<string, Map<string, Ref>>();
  for (let u = 0; u < refs.length; u++) {
    let idx: BackupIndex;
    try {
      idx = await repo.readIndex(refs[u]!);
    } catch (e) {
      if (e instanceof BackupNotFoundError) {
        changed = true;
        gone.add(u);
        continue;
      }
      if (e instanceof CorruptError) {
        damage([u], e.message);
        checked.push({ ref: refs[u]!, index: null });
        continue;
      }
      throw e;
    }
    checked.push({ ref: refs[u]!, index: idx });
    const t = idx.entries;
    for (let c = 0; c < t.length * 2; c++) {
      if (!t.hasRef(c)) continue;
      const packId = idx.packs[t.refPack(c)]!;
      const offset = t.refOffset(c);
      const length = t.refLength(c);
      let m = packs.get(packId);
      if (!m) {
        m = new Map();
        packs.set(packId, m);
      }
      const k = `${offset}:${length}`;
      let r = m.get(k);
      if (!r) m.set(k, (r = { id: t.refId(c), offset, length, plainLength: t.refPlain(c), users: new Set() }));
      else if (!t.refIdEquals(c, r.id) || t.refPlain(c) !== r.plainLength) damage([u], `index names two different chunks at pack ${packId} offset ${offset}`);
      r.users.add(u);
    }
  }

  // 2. every pack exists, is long enough, and its trailer agrees with the indexes
  const sizes = new Map<string, number>();
  const archived = new Set<string>();
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (!id) continue;
    sizes.set(id, o.size);
    if (o.storageClass && ARCHIVE_CLASSES.has(o.storageClass)) archived.add(id);
  }
  const trailerReads = pLimit(TRAILER_READS);
  const trailerChecks: Array<Promise<void>> = [];
  // what is found damaged inside a pack is recorded, so that no new backup builds on it; a missing
  // pack needs no record (no backup can point into a pack that is not there)
  const recorder = new DamageRecorder(repo.target, 'verify', (m) => opts.reporter.warn(m));
  const chunkDamaged = new Set<string>();
  const usersOf = (m: Map<string, Ref>) => new Set([...m.values()].flatMap((r) => [...r.users]));
  const missing = (packId: string, m: Map<string, Ref>) => damage(usersOf(m), `pack ${packId} is missing`);
  const checkTrailer = (packId: string, m: Map<string, Ref>, trailer: PackEntry[]) => {
    const absent = notInTrailer(trailer, m);
    if (absent.length === 0) return;
    const users = new Set(absent.flatMap((r) => [...r.users]));
    damage(users, `pack ${packId} does not hold the chunks the index names at ${absent.length} offset(s), first ${absent[0]!.offset} (its trailer lists others: a swapped or replaced pack?)`);
  };
  for (const [packId, m] of packs) {
    const size = sizes.get(packId);
    if (size === undefined) {
      missing(packId, m);
      continue;
    }
    // only the backups whose envelopes lie past the end are damaged: the others still restore
    const cut = [...m.values()].filter((r) => r.offset + r.length > size);
    if (cut.length) {
      chunkDamaged.add(packId);
      for (const r of cut) await recorder.record({ packId, offset: r.offset, length: r.length, chunkId: r.id.toString('hex'), problem: `pack cut short at ${size} bytes` });
      const end = Math.max(...cut.map((r) => r.offset + r.length));
      damage(new Set(cut.flatMap((r) => [...r.users])), `pack ${packId} is truncated (${size} bytes, needs ${end})`);
    }
    // the trailer is checked from the pack's bytes below with --read-data; an archived pack
    // cannot be read without a thaw, and verify never waits for one
    if (opts.readData || archived.has(packId)) continue;
    trailerChecks.push(
      trailerReads(async () => {
        try {
          checkTrailer(packId, m, await readPackTrailer(size, (offset, length) => repo.target.get(packKey(packId), { offset, length })));
        } catch (e) {
          if (e instanceof ObjectMissingError) missing(packId, m);
          else if (e instanceof PackFormatError) damagedPacks.set(packId, `trailer cannot be read: ${e.message}`);
          else if (e instanceof ObjectArchivedError) archived.add(packId); // moved to an archive tier by the store itself
          else throw e;
        }
      }),
    );
  }
  const failedCheck = (await Promise.allSettled(trailerChecks)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failedCheck) throw failedCheck.reason;

  // 3. optionally, every chunk's content
  let chunksChecked = 0;
  let bytesRead = 0;
  if (opts.readData) {
    const pool = new CodecPool();
    const buffers = new BufferPool(repo.config.chunkSize, pool.size * 2);
    const reads = new SharedReads(1, repo.config.packSize + 2 * repo.config.chunkSize); // a pack and its last envelope
    const total = [...packs.keys()].filter((p) => sizes.has(p)).reduce((n, p) => n + sizes.get(p)!, 0);
    const phase = opts.reporter.phase('verify data', total);
    try {
      for (const [packId, m] of packs) {
        const size = sizes.get(packId);
        if (size === undefined) continue;
        let data: Buffer;
        try {
          data = await repo.target.get(packKey(packId));
        } catch (e) {
          if (e instanceof ObjectMissingError) {
            missing(packId, m);
            continue;
          }
          throw e;
        }
        bytesRead += data.length;
        try {
          checkTrailer(packId, m, await readPackTrailer(data.length, (offset, length) => data.subarray(offset, offset + length)));
        } catch (e) {
          if (!(e instanceof PackFormatError)) throw e;
          damagedPacks.set(packId, `trailer cannot be read: ${e.message}`);
        }
        const shared = reads.share(data);
        const settled = await Promise.allSettled(
          [...m.values()].map(async (r) => {
            if (r.offset + r.length > data.length) return; // already reported as truncated
            const dest = await buffers.acquire();
            const res = await pool.open(shared, r.offset, r.length, dest.ab, dest.offset, r.id, r.plainLength).catch((e: unknown) => {
              buffers.abort(e); // the buffer died with the worker: wake the chunks waiting for one
              throw e;
            });
            buffers.release(res.dest);
            chunksChecked++;
            if (res.error) {
              damage(r.users, `chunk ${r.id.toString('hex').slice(0, 16)} in pack ${packId} at offset ${r.offset}: ${res.error}`);
              chunkDamaged.add(packId);
              await recorder.record({ packId, offset: r.offset, length: r.length, chunkId: r.id.toString('hex'), problem: res.error });
            }
          }),
        );
        reads.release(shared); // every chunk has settled: no worker reads it any more
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        phase.update(bytesRead);
      }
    } finally {
      await pool.close();
    }
    phase.done();
  }

  // 4. what no index explains (only when every backup was looked at)
  const unreferencedPacks: VerifyResult['unreferencedPacks'] = [];
  const backupsWithoutIndex: string[] = [];
  if (opts.backup === undefined) {
    for (const [packId, size] of sizes) if (!packs.has(packId)) unreferencedPacks.push({ packId, size });
    unreferencedPacks.sort((a, b) => (a.packId < b.packId ? -1 : 1));
    const withIndex = new Set(refs.filter((_, u) => !gone.has(u)).map((r) => r.backupId));
    for await (const dir of repo.target.listDirectories?.('backups/') ?? []) {
      const id = dir.slice('backups/'.length);
      if (!withIndex.has(id)) backupsWithoutIndex.push(id);
    }
    backupsWithoutIndex.sort();
  }

  return {
    result: {
      backups: results.filter((_, u) => !gone.has(u)),
      packs: [...damagedPacks].map(([packId, problem]) => ({ packId, problem })).sort((a, b) => (a.packId < b.packId ? -1 : 1)),
      unreferencedPacks,
      backupsWithoutIndex,
      packsChecked: packs.size,
      packsArchived: opts.readData ? 0 : [...packs.keys()].filter((p) => archived.has(p)).length,
      chunksChecked,
      bytesRead,
      damagedPacks: [...chunkDamaged],
      damageRecorded: recorder.recorded,
    },
    checked,
    changed,
  };
}

/**
 * The envelopes the indexes name in a pack that its (intact, CRC-checked) trailer does not list
 * as they name them. The trailer was written with the envelopes, so the pack does not hold those
 * chunks there: it is not the pack its name says (swapped, replaced), or the index is wrong.
 */
function notInTrailer(trailer: PackEntry[], refs: Map<string, Ref>): Ref[] {
  const at = new Map(trailer.map((e) => [e.offset, e]));
  return [...refs.values()].filter((r) => {
    const e = at.get(r.offset);
    return !(e && e.length === r.length && e.plainLength === r.plainLength && e.id.equals(r.id));
  });
}
