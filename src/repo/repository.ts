/**
 * A repository on a storage target: its config, its committed backups, and the chunk map used
 * for dedup. A backup exists when, and only when, its index object exists.
 */
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { selectBackup } from './select-backup.js';
import { CONFIG_KEY, newRepoConfig, parseRepoConfig, type RepoConfig } from './config.js';
import { ChunkMap } from './chunk-map.js';
import { checkIndexName, decodeIndex, encodeIndexParts, indexKey, IndexFormatError, parseIndexHeader, parseIndexKey, INDEX_MAGIC, type BackupIndex, type IndexHeader } from './index-file.js';
import { ObjectExistsError, ObjectMissingError, type Target } from '../storage/target.js';
import { packIdFromKey } from './pack.js';
import { damagedPacks } from './damage.js';
import { BackupNotFoundError, BkpError, CorruptError, ExitCode, RepoExistsError, RepoMissingError } from '../errors.js';

export interface BackupRef {
  backupId: string;
  deviceKey: string;
  key: string;
  size: number;
}

export class Repository {
  private chunkMapPromise: Promise<ChunkMap> | undefined;
  private readonly indexCache = new Map<string, Promise<BackupIndex>>();
  private backupsPromise: Promise<BackupRef[]> | undefined;

  private constructor(readonly target: Target, readonly config: RepoConfig) {}

  static async init(target: Target, opts: Parameters<typeof newRepoConfig>[0] = {}): Promise<Repository> {
    const config = newRepoConfig(opts);
    if (await target.stat(CONFIG_KEY)) throw new RepoExistsError(`a bkp repository already exists at ${target.location}`);
    for await (const o of target.list('')) {
      throw new RepoExistsError(`${target.location} is not empty (found ${o.key}); choose an empty directory or prefix`);
    }
    try {
      await target.put(CONFIG_KEY, Buffer.from(JSON.stringify(config, null, 2) + '\n'), { ifAbsent: true });
    } catch (e) {
      if (e instanceof ObjectExistsError) throw new RepoExistsError(`a bkp repository already exists at ${target.location}`);
      throw e;
    }
    return new Repository(target, config);
  }

  static async open(target: Target): Promise<Repository> {
    let raw: Buffer;
    try {
      raw = await target.get(CONFIG_KEY);
    } catch (e) {
      if (e instanceof ObjectMissingError) {
        throw new RepoMissingError(`no bkp repository at ${target.location} (create one with: bkp init --repo ${target.location})`);
      }
      throw e;
    }
    return new Repository(target, parseRepoConfig(raw, target.location));
  }

  /** Every committed backup index, oldest first (backup ids sort by time). */
  /**
   * Every committed index, by backup id then device key, listed now. With `cached`, a listing
   * this Repository made before is reused (a backup run asks several times: the previous backup
   * of each device, dedup); only for use under the repository lock, after it was taken, since
   * only this instance's own commits and removals refresh it. gc and prune always list afresh:
   * a stale listing would make live packs look unreferenced.
   */
  listBackups(opts: { cached?: boolean } = {}): Promise<BackupRef[]> {
    if (!opts.cached) return this.listBackupsNow();
    this.backupsPromise ??= this.listBackupsNow();
    this.backupsPromise.catch(() => (this.backupsPromise = undefined));
    return this.backupsPromise.then((all) => [...all]);
  }

  private async listBackupsNow(): Promise<BackupRef[]> {
    const out: BackupRef[] = [];
    for await (const o of this.target.list('backups/')) {
      const p = parseIndexKey(o.key);
      if (p) out.push({ ...p, key: o.key, size: o.size });
    }
    return out.sort((a, b) => (a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : a.deviceKey < b.deviceKey ? -1 : 1));
  }

  /**
   * Reads and checks one index. With `cache`, the decoded index is kept for the next read of the
   * same index by this Repository (a backup reads the previous index of a device twice: for the
   * chain and for dedup).
   */
  readIndex(ref: Pick<BackupRef, 'backupId' | 'deviceKey'>, opts: { cache?: boolean } = {}): Promise<BackupIndex> {
    const key = indexKey(ref.backupId, ref.deviceKey);
    if (!opts.cache) return this.loadIndex(ref, key);
    let p = this.indexCache.get(key);
    if (!p) {
      p = this.loadIndex(ref, key);
      this.indexCache.set(key, p);
      p.catch(() => this.indexCache.delete(key));
    }
    return p;
  }

  private async loadIndex(ref: Pick<BackupRef, 'backupId' | 'deviceKey'>, key: string): Promise<BackupIndex> {
    let raw: Buffer;
    try {
      raw = await this.target.get(key);
    } catch (e) {
      if (e instanceof ObjectMissingError) throw new BackupNotFoundError(`backup ${ref.backupId} has no index for device ${ref.deviceKey}`);
      throw e;
    }
    try {
      const index = decodeIndex(raw);
      checkIndexName(index.header, ref.backupId, ref.deviceKey);
      return index;
    } catch (e) {
      if (e instanceof IndexFormatError) throw new CorruptError(`index ${key} is damaged: ${e.message}`);
      throw e;
    }
  }

  /**
   * Only the header, from the first bytes of the index (for listings; not checksummed), checked
   * field by field and against the index's name: a damaged header is a CorruptError naming it.
   */
  async readIndexHeader(ref: BackupRef): Promise<IndexHeader> {
    let head: Buffer;
    try {
      head = await this.target.get(ref.key, { offset: 0, length: Math.min(ref.size, 64 * 1024) });
    } catch (e) {
      if (e instanceof ObjectMissingError) throw new BackupNotFoundError(`backup ${ref.backupId} has no index for device ${ref.deviceKey}`);
      throw e;
    }
    try {
      if (head.length < 12 || !head.subarray(0, 4).equals(INDEX_MAGIC)) throw new IndexFormatError('bad index magic');
      const len = head.readUInt32LE(8);
      // never allocate what a damaged length claims
      if (12 + len > ref.size) throw new IndexFormatError('header length past the end');
      const json = len + 12 <= head.length ? head.subarray(12, 12 + len) : (await this.target.get(ref.key, { offset: 12, length: len }));
      const header = parseIndexHeader(json);
      checkIndexName(header, ref.backupId, ref.deviceKey);
      return header;
    } catch (e) {
      if (e instanceof IndexFormatError) throw new CorruptError(`index ${ref.key} is damaged: ${e.message}`);
      throw e;
    }
  }

  /**
   * The commit point of a backup: the index is written last, atomically, and never replaces an
   * existing one. Every pack it names must already be durable.
   */
  async commitIndex(index: BackupIndex): Promise<void> {
    const key = indexKey(index.header.backupId, index.header.device.key);
    try {
      await this.target.put(key, encodeIndexParts(index), { ifAbsent: true });
    } catch (e) {
      // backup ids are unique per run: another index under this key is not ours to replace
      if (e instanceof ObjectExistsError) throw new BkpError(`index ${key} already exists in ${this.target.location} with other content; this backup was not committed`, ExitCode.FAILURE, { cause: e });
      throw e;
    }
    this.backupsPromise = undefined;
  }

  /**
   * Rewrites a committed index with new chunk locations (gc's repack), atomically. The backup it
   * describes does not change: same header, same chunks, only where they are stored.
   */
  async replaceIndex(index: BackupIndex): Promise<void> {
    const key = indexKey(index.header.backupId, index.header.device.key);
    await this.target.put(key, encodeIndexParts(index));
    this.indexCache.delete(key);
    this.backupsPromise = undefined;
  }

  /** Removes a backup: its index goes, its packs stay until gc finds them unreferenced. */
  async removeBackup(ref: Pick<BackupRef, 'backupId' | 'deviceKey'>): Promise<void> {
    const key = indexKey(ref.backupId, ref.deviceKey);
    await this.target.delete(key);
    this.indexCache.delete(key);
    this.backupsPromise = undefined;
  }

  private packsPromise: Promise<Set<string>> | undefined;

  /** Ids of the packs present in the repository (listed once per Repository object). */
  presentPacks(): Promise<Set<string>> {
    this.packsPromise ??= (async () => {
      const s = new Set<string>();
      for await (const o of this.target.list('packs/')) {
        const id = packIdFromKey(o.key);
        if (id) s.add(id);
      }
      return s;
    })();
    return this.packsPromise;
  }

  private damagedPromise: Promise<ReadonlySet<string>> | undefined;

  /**
   * Ids of the packs that a damage record names (listed once per Repository object): new backups
   * never point into them, and an incremental reads again the chunks its parent has there.
   */
  damagedPacks(): Promise<ReadonlySet<string>> {
    this.damagedPromise ??= damagedPacks(this.target).then((m) => new Set(m.keys()));
    return this.damagedPromise;
  }

  /**
   * The chunks referenced by committed backups whose packs are present and not known to be
   * damaged (built on first use, then kept up to date by the writer). A chunk in a lost or
   * damaged pack is not known: it is stored again.
   */
  chunkMap(): Promise<ChunkMap> {
    this.chunkMapPromise ??= (async () => {
      const map = new ChunkMap();
      const present = await this.presentPacks();
      const damaged = await this.damagedPacks();
      // the newest index of every device: each index is complete, so together they hold every
      // chunk the devices had at their last backup. Older backups are not read: their other chunks
      // rarely come back, and reading them would cost memory and requests in proportion to the
      // repository's history rather than to its devices.
      const newest = new Map<string, BackupRef>();
      for (const ref of await this.listBackups({ cached: true })) newest.set(ref.deviceKey, ref);
      for (const ref of newest.values()) {
        let idx: BackupIndex;
        try {
          idx = await this.readIndex(ref, { cache: true });
        } catch (e) {
          // a damaged index only costs dedup against it; verify reports it
          if (e instanceof CorruptError) continue;
          throw e;
        }
        const t = idx.entries;
        for (let r = 0; r < t.length * 2; r++) {
          if (!t.hasRef(r)) continue;
          const p = idx.packs[t.refPack(r)]!;
          if (present.has(p) && !damaged.has(p)) map.addRef(idx, r);
        }
      }
      return map;
    })();
    return this.chunkMapPromise;
  }

  /** The newest committed backup of a device, or undefined. */
  async latestOf(deviceKey: string, opts: { cached?: boolean } = {}): Promise<BackupRef | undefined> {
    const all = (await this.listBackups(opts)).filter((r) => r.deviceKey === deviceKey);
    return all[all.length - 1];
  }

  /**
   * Resolves `--backup ID|latest` and `--device NAME` to one backup index.
   * NAME may be the device key or the path the device was backed up from.
   */
  async resolve(backup: string, device: string | undefined): Promise<BackupRef> {
    const cands = selectBackup(await this.listBackups(), backup, device, this.target.location);
    if (cands.length > 1) {
      throw new BackupNotFoundError(`backup ${cands[0]!.backupId} holds several devices (${cands.map((r) => r.deviceKey).join(', ')}); choose one with --device`);
    }
    return cands[0]!;
  }
}

/**
 * The name a device has inside a repository: its absolute path with '/' turned into '-' and every
 * other character outside [A-Za-z0-9.] written as _XX (hex), so that distinct paths never share a
 * name and a name never starts with '.' (/dev/sda → dev-sda, /dev/mapper/vg-root → dev-mapper-vg_2droot).
 */
export function deviceKeyOf(devicePath: string): string {
  const parts = path.resolve(devicePath).split('/').filter((p) => p !== '');
  const esc = (p: string) =>
    p.replace(/[^A-Za-z0-9.]/g, (c) => [...Buffer.from(c, 'utf8')].map((b) => `_${b.toString(16).padStart(2, '0')}`).join('')).replace(/^\./, '_2e');
  const key = parts.map(esc).join('-') || '_'; // '_' alone never comes from escaping: the root directory
  // file names are limited to 255 bytes: a very long path keeps a readable head and a digest
  return key.length <= 200 ? key : `${key.slice(0, 160)}~${createHash('sha256').update(path.resolve(devicePath)).digest('hex').slice(0, 32)}`;
}

export function newBackupId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, ''); // 20261125T143138.123Z: sorts by time
  return `${t}-${Math.floor(Math.random() * 0x1000000).toString(16).padStart(6, '0')}`;
}
