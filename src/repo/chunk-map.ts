/**
 * Where each stored chunk lives: chunk id → (pack, envelope offset, envelope length).
 * Kept in one flat byte table (open addressing) rather than a Map of strings, so that a
 * repository of a million chunks costs ~100 MB, not ~300 MB of JS objects.
 */

export interface ChunkLocation {
  packId: string;
  offset: number;
  length: number;
}

const SLOT = 48; // id 32 | pack ref u32 (ordinal + 1; 0 = empty) | length u32 | offset u64

export class ChunkMap {
  private table: Buffer;
  private mask: number;
  private count = 0;
  private readonly packs: string[] = [];
  private readonly packRefs = new Map<string, number>();

  constructor(initialSlots = 1024) {
    let n = 1024;
    while (n < initialSlots) n *= 2;
    this.table = Buffer.alloc(n * SLOT);
    this.mask = n - 1;
  }

  get size(): number {
    return this.count;
  }

  private slotOf(id: Buffer): number {
    // SHA-256 output is uniform: its first bytes are a good hash
    let s = id.readUInt32LE(0) & this.mask;
    for (;;) {
      const o = s * SLOT;
      if (this.table.readUInt32LE(o + 32) === 0) return s;
      if (this.table.compare(id, 0, 32, o, o + 32) === 0) return s;
      s = (s + 1) & this.mask;
    }
  }

  get(id: Buffer): ChunkLocation | undefined {
    const o = this.slotOf(id) * SLOT;
    const ref = this.table.readUInt32LE(o + 32);
    if (ref === 0) return undefined;
    return { packId: this.packs[ref - 1]!, length: this.table.readUInt32LE(o + 36), offset: Number(this.table.readBigUInt64LE(o + 40)) };
  }

  has(id: Buffer): boolean {
    return this.table.readUInt32LE(this.slotOf(id) * SLOT + 32) !== 0;
  }

  /** Records a location; a chunk already known keeps its first location. */
  add(id: Buffer, loc: ChunkLocation): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    const o = this.slotOf(id) * SLOT;
    if (this.table.readUInt32LE(o + 32) !== 0) return;
    let ref = this.packRefs.get(loc.packId);
    if (ref === undefined) {
      this.packs.push(loc.packId);
      ref = this.packs.length;
      this.packRefs.set(loc.packId, ref);
    }
    id.copy(this.table, o, 0, 32);
    this.table.writeUInt32LE(ref, o + 32);
    this.table.writeUInt32LE(loc.length, o + 36);
    this.table.writeBigUInt64LE(BigInt(loc.offset), o + 40);
    this.count++;
  }

  private grow(): void {
    const old = this.table;
    const n = (this.mask + 1) * 2;
    this.table = Buffer.alloc(n * SLOT);
    this.mask = n - 1;
    for (let o = 0; o < old.length; o += SLOT) {
      if (old.readUInt32LE(o + 32) === 0) continue;
      const s = this.slotOf(old.subarray(o, o + 32)) * SLOT;
      old.copy(this.table, s, o, o + SLOT);
    }
  }
}
