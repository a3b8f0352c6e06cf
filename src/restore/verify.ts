/**
 * `bkp verify`: are the backups restorable? Without --read-data: every index is intact and every
 * pack it names exists and is long enough. With --read-data: every referenced chunk is read,
 * decompressed and its SHA-256 checked — each pack read once, however many backups share it.
 */
import type { Repository, BackupRef } from '../repo/repository.js';
import { packIdFromKey, packKey } from '../repo/pack.js';
import { CodecPool, SharedReads } from '../repo/codec-pool.js';
import { BufferPool } from '../backup/buffer-pool.js';
import { CorruptError } from '../errors.js';
import { selectBackup } from '../repo/select-backup.js';
import { ObjectMissingError } from '../storage/target.js';
import type { Reporter } from '../report/reporter.js';

export interface VerifiedBackup {
  backupId: string;
  deviceKey: string;
  ok: boolean;
  problems: string[];
}

export interface VerifyResult {
  backups: VerifiedBackup[];
  packsChecked: number;
  chunksChecked: number;
  bytesRead: number;
}

interface Ref {
  id: Buffer;
  offset: number;
  length: number;
  plainLength: number;
  users: Set<number>;
}

export async function runVerify(opts: { repo: Repository; backup?: string; readData: boolean; reporter: Reporter }): Promise<VerifyResult> {
  const { repo } = opts;
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

  // 1. indexes, and what each pack must hold
  const packs = new Map<string, Map<string, Ref>>();
  for (let u = 0; u < refs.length; u++) {
    let idx;
    try {
      idx = await repo.readIndex(refs[u]!);
    } catch (e) {
      if (e instanceof CorruptError) {
        damage([u], e.message);
        continue;
      }
      throw e;
    }
    const t = idx.entries;
    for (let i = 0; i < t.length; i++) {
      if (!t.isData(i)) continue;
      const packId = idx.packs[t.packOrdinal(i)]!;
      const offset = t.offset(i);
      const length = t.envelopeLength(i);
      let m = packs.get(packId);
      if (!m) packs.set(packId, (m = new Map()));
      const k = `${offset}:${length}`;
      let r = m.get(k);
      if (!r) m.set(k, (r = { id: t.id(i), offset, length, plainLength: t.plainLength(i), users: new Set() }));
      else if (!t.idEquals(i, r.id)) damage([u], `index names two different chunks at pack ${packId} offset ${offset}`);
      r.users.add(u);
    }
  }

  // 2. every pack exists and is long enough
  const sizes = new Map<string, number>();
  for await (const o of repo.target.list('packs/')) {
    const id = packIdFromKey(o.key);
    if (id) sizes.set(id, o.size);
  }
  const usersOf = (m: Map<string, Ref>) => new Set([...m.values()].flatMap((r) => [...r.users]));
  for (const [packId, m] of packs) {
    const size = sizes.get(packId);
    if (size === undefined) {
      damage(usersOf(m), `pack ${packId} is missing`);
      continue;
    }
    // only the backups whose envelopes lie past the end are damaged: the others still restore
    const cut = [...m.values()].filter((r) => r.offset + r.length > size);
    if (cut.length) {
      const end = Math.max(...cut.map((r) => r.offset + r.length));
      damage(new Set(cut.flatMap((r) => [...r.users])), `pack ${packId} is truncated (${size} bytes, needs ${end})`);
    }
  }

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
            damage(usersOf(m), `pack ${packId} is missing`);
            continue;
          }
          throw e;
        }
        bytesRead += data.length;
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
            if (res.error) damage(r.users, `chunk ${r.id.toString('hex').slice(0, 16)} in pack ${packId} at offset ${r.offset}: ${res.error}`);
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
  return { backups: results, packsChecked: packs.size, chunksChecked, bytesRead };
}
