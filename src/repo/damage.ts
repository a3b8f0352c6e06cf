/**
 * Damage records (docs/format.md, "Damage records"): what verify --read-data and restore found
 * damaged, kept in the repository so that no later backup deduplicates against it. One small
 * create-only object per damaged envelope, `damage/<packid>/<envelope offset>`; a pack named by
 * any record is a damaged pack: new backups never point into it, and `bkp repair` heals it.
 */
import type { Target } from '../storage/target.js';
import { ObjectExistsError } from '../storage/target.js';

export const DAMAGE_PREFIX = 'damage/';

export interface DamageRecord {
  packId: string;
  /** Envelope offset and length in the pack, as the index names them. */
  offset: number;
  length: number;
  /** The chunk id (hex) the index expects there. */
  chunkId: string;
  problem: string;
  /** The command that found it: verify, restore. */
  foundBy: string;
  time: string;
}

export function damageKey(packId: string, offset: number): string {
  return `${DAMAGE_PREFIX}${packId}/${offset}`;
}

export function parseDamageKey(key: string): { packId: string; offset: number } | undefined {
  const m = /^damage\/([0-9a-f]{32})\/(0|[1-9][0-9]{0,15})$/.exec(key);
  return m ? { packId: m[1]!, offset: Number(m[2]) } : undefined;
}

/** Stores a record unless one for the same envelope exists; true when it is new. */
export async function recordDamage(target: Target, rec: Omit<DamageRecord, 'time'>): Promise<boolean> {
  const body = Buffer.from(JSON.stringify({ ...rec, time: new Date().toISOString() } satisfies DamageRecord) + '\n');
  try {
    await target.put(damageKey(rec.packId, rec.offset), body, { ifAbsent: true });
    return true;
  } catch (e) {
    if (e instanceof ObjectExistsError) return false;
    throw e;
  }
}

/** The packs that some record names damaged, each with the envelope offsets named (from the keys alone). */
export async function damagedPacks(target: Target): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for await (const o of target.list(DAMAGE_PREFIX)) {
    const k = parseDamageKey(o.key);
    if (!k) continue;
    let offs = out.get(k.packId);
    if (!offs) out.set(k.packId, (offs = []));
    offs.push(k.offset);
  }
  return out;
}

/** Removes every record of a pack (repair: the pack was quarantined, or reads back intact). */
export async function clearDamage(target: Target, packId: string, offsets: readonly number[]): Promise<void> {
  for (const off of offsets) await target.delete(damageKey(packId, off));
}

/**
 * A recorder for one command: records each damaged envelope once and counts the new records. A
 * record that cannot be written (a read-only credential, a full disk) costs only the warning:
 * the command's own finding is reported either way.
 */
export class DamageRecorder {
  recorded = 0;
  private readonly seen = new Set<string>();
  private warned = false;
  constructor(
    private readonly target: Target,
    private readonly foundBy: string,
    private readonly warn: (m: string) => void,
  ) {}

  async record(rec: Omit<DamageRecord, 'time' | 'foundBy'>): Promise<void> {
    const k = damageKey(rec.packId, rec.offset);
    if (this.seen.has(k)) return;
    this.seen.add(k);
    try {
      if (await recordDamage(this.target, { ...rec, foundBy: this.foundBy })) this.recorded++;
    } catch (e) {
      if (!this.warned) this.warn(`could not record the damage in the repository (${(e as Error).message}); new backups may still deduplicate against it`);
      this.warned = true;
    }
  }
}
