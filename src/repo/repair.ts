/**
 * `bkp repair`: heals what damage records (verify --read-data, restore) and missing packs say is
 * broken. Every chunk that a backup keeps in a damaged or missing pack is pointed at an intact copy
 * of the same chunk id in a healthy pack (checked before use), or, when the damaged pack's own
 * envelope is intact and there is no other copy, copied into a new pack. What has no intact copy
 * anywhere is listed per backup as device ranges. Damaged packs are then quarantined: moved to
 * `quarantine/<packid>.pack`, never deleted. Runs under the repository lock; with dryRun it reads
 * and checks exactly as the real run does and changes nothing.
 *
 * Order of changes, each safe to interrupt: new packs durable → indexes rewritten (a plain replace
 * of the same key, same header and chunk ids, only locations change) → pack quarantined (copied,
 * then removed from packs/) → its damage records removed.
 */
import type { Repository, BackupRef } from './repository.js';
import { patchRuns, type BackupIndex } from './index-file.js';
import { packIdFromKey, packKey } from './pack.js';
import { PackWriter } from './pack-writer.js';
import { checkChunk } from './chunk-check.js';
import { clearDamage, damagedPacks } from './damage.js';
import { CorruptError } from '../errors.js';
import { ObjectMissingError } from '../storage/target.js';

export const QUARANTINE_PREFIX = 'quarantine/';
export const quarantineKey = (packId: string) => `${QUARANTINE_PREFIX}${packId}.pack`;

export interface RepairedPack {
  packId: string;
  /** missing: named by an index but absent; damaged: some envelope fails its checks or lies past the end. */
  state: 'missing' | 'damaged';
  damagedChunks: number;
  intactChunks: number;
  /** Where the pack was moved (null: missing, nothing to move). */
  quarantinedAs: string | null;
}

export interface UnrecoverableRange {
  offset: number;
  length: number;
  problem: string;
}

export interface RepairResult {
  dryRun: boolean;
  packs: RepairedPack[];
  /** Packs a record named damaged that now read back intact (records removed). */
  packsCleared: string[];
  /** Index entries pointed at an intact copy of their chunk in a healthy pack. */
  chunksRepointed: number;
  /** Intact envelopes copied out of damaged packs into new packs (each chunk id once). */
  chunksCopied: number;
  indexesRewritten: number;
  unrecoverable: Array<{ backupId: string; deviceKey: string; ranges: UnrecoverableRange[] }>;
  unreadableIndexes: Array<{ backupId: string; deviceKey: string; problem: string }>;
  /** Nothing remains that repair could not heal. */
  healed: boolean;
}

export interface RepairOptions {
  dryRun?: boolean;
  /** Called before each change to the repository: throw to stop (the repository lock was lost). */
  checkLock?: () => Promise<void>;
}

interface Loc {
  packId: string;
  offset: number;
  length: number;
}

interface Envelope {
  id: Buffer;
  length: number;
  plainLength: number;
}

export async function repairRepository(repo: Repository, opts: RepairOptions = {}): Promise<RepairResult> {
  const dryRun = !!opts.dryRun;
  const result: RepairResult = { dryRun, packs: [], packsCleared: [], chunksRepointed: 0, chunksCopied: 0, indexesRewritten: 0, unrecoverable: [], unreadableIndexes: [], healed: true };

  const indexes: Array<{ ref: BackupRef; index: BackupIndex }> = [];
  for (const ref of await repo.listBackups()) {
    try {
      indexes.push({ ref, index: await repo.readIndex(ref) });
    } catch (e) {
      if (!(e instanceof CorruptError)) throw e;
      result.unreadableIndexes.push({ backupId: ref.backupId, deviceKey: ref.deviceKey, problem: e.message });
    }
  }
  const present = new Set<string>();
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (id) present.add(id);
  }
  const records = await damagedPacks(repo.target);

  // the suspects: recorded packs, and packs an index names that are not there
  const named = new Set(indexes.flatMap(({ index }) => index.packs));
  const suspects = new Set([...records.keys(), ...[...named].filter((p) => !present.has(p))]);
  // what backups need from each suspect pack (memory in proportion to the damage, not the repository)
  const referenced = new Map<string, Map<number, Envelope>>();
  const needed = new Set<string>(); // chunk ids (hex) kept in a suspect pack
  for (const { index } of indexes) {
    if (!index.packs.some((p) => suspects.has(p))) continue;
    const t = index.entries;
    for (let r = 0; r < t.length * 2; r++) {
      if (!t.hasRef(r)) continue;
      const packId = index.packs[t.refPack(r)]!;
      if (!suspects.has(packId)) continue;
      let m = referenced.get(packId);
      if (!m) {
        m = new Map<number, Envelope>();
        referenced.set(packId, m);
      }
      const offset = t.refOffset(r);
      if (m.has(offset)) continue;
      m.set(offset, { id: Buffer.from(t.refId(r)), length: t.refLength(r), plainLength: t.refPlain(r) });
      needed.add(t.refId(r).toString('hex'));
    }
  }
  // where else those chunk ids are stored
  const copies = new Map<string, Loc[]>();
  if (needed.size) {
    for (const { index } of indexes) {
      const t = index.entries;
      for (let r = 0; r < t.length * 2; r++) {
        if (!t.hasRef(r)) continue;
        const packId = index.packs[t.refPack(r)]!;
        if (suspects.has(packId)) continue;
        const hex = t.refId(r).toString('hex');
        if (!needed.has(hex)) continue;
        let l = copies.get(hex);
        if (!l) copies.set(hex, (l = []));
        const offset = t.refOffset(r);
        // a few distinct places are enough: one intact copy is all a chunk needs
        if (l.length < 4 && !l.some((x) => x.packId === packId && x.offset === offset)) l.push({ packId, offset, length: t.refLength(r) });
      }
    }
  }
  const healthy = (p: string) => present.has(p) && !suspects.has(p);

  // an intact copy in a healthy pack, checked before anything points at it
  const scratch = Buffer.alloc(repo.config.chunkSize);
  const healthyCopy = new Map<string, Loc | null>();
  const findHealthy = async (id: Buffer, plainLength: number): Promise<Loc | null> => {
    const hex = id.toString('hex');
    if (healthyCopy.has(hex)) return healthyCopy.get(hex)!;
    let found: Loc | null = null;
    for (const loc of copies.get(hex) ?? []) {
      if (!healthy(loc.packId)) continue;
      const env = await repo.target.get(packKey(loc.packId), { offset: loc.offset, length: loc.length }).catch((e: unknown) => {
        if (e instanceof ObjectMissingError) return undefined;
        throw e;
      });
      const dest = scratch.length >= plainLength ? scratch : Buffer.alloc(plainLength);
      if (env && env.length === loc.length && checkChunk(env, dest, id, plainLength) === undefined) {
        found = loc;
        break;
      }
    }
    healthyCopy.set(hex, found);
    return found;
  };

  // 1. every suspect pack: which referenced envelopes are intact; intact ones without a healthy
  //    copy are copied out (each chunk id once)
  const writer = dryRun ? undefined : new PackWriter(repo.target, repo.config.packSize);
  const copied = new Map<string, Loc | null>(); // chunk id (hex) → its new location (null in a dry run)
  const bad = new Map<string, Map<number, string>>(); // pack → offset → problem
  const quarantine: string[] = [];
  for (const packId of [...suspects].sort()) {
    const want = referenced.get(packId);
    if (!want) {
      // recorded, but no backup needs it: nothing to heal (gc removes an unreferenced pack)
      result.packsCleared.push(packId);
      continue;
    }
    let data: Buffer | undefined;
    if (present.has(packId)) {
      try {
        data = await repo.target.get(packKey(packId));
      } catch (e) {
        if (!(e instanceof ObjectMissingError)) throw e;
      }
    }
    const problems = new Map<number, string>();
    const intact: Array<[Buffer, Envelope]> = [];
    for (const [offset, e] of want) {
      if (!data) {
        problems.set(offset, `pack ${packId} is missing`);
        continue;
      }
      if (offset + e.length > data.length) {
        problems.set(offset, `pack ${packId} is cut short at ${data.length} bytes`);
        continue;
      }
      const env = data.subarray(offset, offset + e.length);
      const err = checkChunk(env, e.plainLength <= scratch.length ? scratch : Buffer.alloc(e.plainLength), e.id, e.plainLength);
      if (err) {
        problems.set(offset, `chunk ${e.id.toString('hex').slice(0, 16)} in pack ${packId} at offset ${offset}: ${err}`);
        continue;
      }
      intact.push([env, e]);
    }
    if (problems.size === 0 && data) {
      result.packsCleared.push(packId); // a false alarm (or healed by hand): the pack reads back intact
      continue;
    }
    // the pack leaves packs/: its intact chunks that have no healthy copy elsewhere move out first
    for (const [env, e] of intact) {
      const hex = e.id.toString('hex');
      if (copied.has(hex) || (await findHealthy(e.id, e.plainLength))) continue;
      copied.set(hex, writer ? await writer.add(e.id, env, e.plainLength) : null);
      result.chunksCopied++;
    }
    bad.set(packId, problems);
    result.packs.push({ packId, state: data ? 'damaged' : 'missing', damagedChunks: problems.size, intactChunks: intact.length, quarantinedAs: data ? quarantineKey(packId) : null });
    if (data) quarantine.push(packId);
  }
  await writer?.flush();

  // 2. every index with chunks in a damaged or missing pack: each such chunk goes to a healthy
  //    copy, or to the copy just made, or stays (unrecoverable, listed)
  const leaving = new Set(result.packs.map((p) => p.packId));
  for (const { ref, index } of indexes) {
    if (!index.packs.some((p) => leaving.has(p))) continue;
    const packs: string[] = [];
    const ord = new Map<string, number>();
    const ordinal = (p: string) => {
      let o = ord.get(p);
      if (o === undefined) ord.set(p, (o = packs.push(p) - 1));
      return o;
    };
    const entries = index.entries.clone();
    const lost: UnrecoverableRange[] = [];
    let changed = 0;
    for (let r = 0; r < entries.length * 2; r++) {
      if (!entries.hasRef(r)) continue;
      const p = index.packs[entries.refPack(r)]!;
      if (!leaving.has(p)) {
        entries.setRefPack(r, ordinal(p));
        continue;
      }
      const id = entries.refId(r);
      const hex = id.toString('hex');
      const to = (await findHealthy(id, entries.refPlain(r))) ?? (copied.has(hex) ? (copied.get(hex) ?? { packId: p, offset: 0, length: 0 }) : undefined);
      if (to) {
        if (healthyCopy.get(hex)) result.chunksRepointed++;
        changed++;
        entries.relocate(r, ordinal(to.packId), to.offset, to.length);
        continue;
      }
      const problem = bad.get(p)?.get(entries.refOffset(r)) ?? `pack ${p} is damaged`;
      for (const run of lostRuns(index, r)) lost.push({ ...run, problem: `${problem}; no intact copy of this chunk anywhere` });
      entries.setRefPack(r, ordinal(p));
    }
    if (lost.length) result.unrecoverable.push({ backupId: ref.backupId, deviceKey: ref.deviceKey, ranges: mergeRanges(lost) });
    if (changed === 0) continue;
    result.indexesRewritten++;
    if (!dryRun) {
      await opts.checkLock?.();
      await repo.replaceIndex({ header: index.header, packs, entries });
    }
  }

  // 3. damaged packs out of packs/, kept under quarantine/; their records go with them
  for (const packId of quarantine) {
    if (dryRun) continue;
    await opts.checkLock?.();
    const data = await repo.target.get(packKey(packId));
    await repo.target.put(quarantineKey(packId), data);
    await repo.target.delete(packKey(packId));
  }
  for (const packId of [...quarantine, ...result.packsCleared]) {
    if (dryRun || !records.has(packId)) continue;
    await opts.checkLock?.();
    await clearDamage(repo.target, packId, records.get(packId)!);
  }
  result.healed = result.unrecoverable.length === 0 && result.unreadableIndexes.length === 0;
  return result;
}

/** Device ranges in order, neighbours with the same problem merged. */
export function mergeRanges(ranges: readonly UnrecoverableRange[]): UnrecoverableRange[] {
  const out: UnrecoverableRange[] = [];
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === r.offset && last.problem === r.problem) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}

/**
 * The device bytes lost with ref `r`'s chunk: a patch's pieces, or the part of a base that no
 * patch covers.
 */
function lostRuns(index: BackupIndex, r: number): Array<{ offset: number; length: number }> {
  const e = index.entries;
  const i = r >>> 1;
  const all = (1n << 64n) - 1n;
  const mask = r & 1 ? e.patchMask(i) : e.hasPatch(i) ? ~e.patchMask(i) & all : all;
  return patchRuns(i * index.header.chunkSize, mask, index.header.pieceSize, e.regionLength(i));
}
