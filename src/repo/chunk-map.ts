/**
 * Where each stored chunk lives: chunk id → (pack, envelope offset, envelope length).
 *
 * The map does not copy what index tables already hold: a slot is 8 bytes naming a chunk ref (a
 * region's base or patch) of a registered table (the newest index of each device, and the index a
 * backup is building), and the id, pack and offset are read from that ref. With open addressing at
 * most half full, a device of a million regions costs 16–64 MB here, on top of its index table
 * (120 MB) that the backup holds anyway.
 */
import type { IndexEntries } from './index-file.js';

export interface ChunkLocation {
  packId: string;
  offset: number;
  length: number;
}

/** An index's entry table and the pack table its ordinals refer to (both may change in place). */
export interface EntrySource {
  readonly entries: IndexEntries;
  readonly packs: readonly string[];
}

export class ChunkMap {
  /** Per slot: source number + 1 (0 = empty), ref number. */
  private slots: Uint32Array;
  private mask: number;
  private count = 0;
  private readonly sources: EntrySource[] = [];
  private readonly sourceNumbers = new Map<EntrySource, number>();

  constructor(initialSlots = 1024) {
    let n = 1024;
    while (n < initialSlots) n *= 2;
    this.slots = new Uint32Array(n * 2);
    this.mask = n - 1;
  }

  get size(): number {
    return this.count;
  }

  private slotOf(id: Uint8Array): number {
    // SHA-256 output is uniform: its first bytes are a good hash
    let s = (id[0]! | (id[1]! << 8) | (id[2]! << 16) | (id[3]! << 24)) & this.mask;
    for (;;) {
      const src = this.slots[s * 2]!;
      if (src === 0) return s;
      if (this.sources[src - 1]!.entries.refIdEquals(this.slots[s * 2 + 1]!, id)) return s;
      s = (s + 1) & this.mask;
    }
  }

  get(id: Uint8Array): ChunkLocation | undefined {
    const s = this.slotOf(id);
    const src = this.slots[s * 2]!;
    if (src === 0) return undefined;
    const { entries, packs } = this.sources[src - 1]!;
    const r = this.slots[s * 2 + 1]!;
    return { packId: packs[entries.refPack(r)]!, offset: entries.refOffset(r), length: entries.refLength(r) };
  }

  has(id: Uint8Array): boolean {
    return this.slots[this.slotOf(id) * 2] !== 0;
  }

  /** Records ref `r` of `source` (one that is present); a chunk already known keeps its first location. */
  addRef(source: EntrySource, r: number): void {
    let n = this.sourceNumbers.get(source);
    if (n === undefined) {
      n = this.sources.push(source);
      this.sourceNumbers.set(source, n);
    }
    this.insert(source.entries.refId(r), n, r);
  }

  private insert(id: Uint8Array, source: number, r: number): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    const s = this.slotOf(id);
    if (this.slots[s * 2] !== 0) return;
    this.slots[s * 2] = source;
    this.slots[s * 2 + 1] = r;
    this.count++;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.mask = old.length - 1; // old.length / 2 slots before, twice that now
    for (let k = 0; k < old.length; k += 2) {
      const src = old[k]!;
      if (src === 0) continue;
      const s = this.slotOf(this.sources[src - 1]!.entries.refId(old[k + 1]!));
      this.slots[s * 2] = src;
      this.slots[s * 2 + 1] = old[k + 1]!;
    }
  }
}
