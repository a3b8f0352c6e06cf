/**
 * What gc will do, decided from the indexes and the pack listing alone (pure), so that
 * `gc --dry-run` and `prune --dry-run` report exactly what the real run then does: which packs
 * no index references (removed), which are mostly garbage (repacked: their live envelopes copied
 * into new packs, then removed too), and which stay.
 */
import type { BackupIndex } from './index-file.js';

export interface PackObject {
  id: string;
  size: number;
  /** In an archive storage class: cannot be read without a thaw, so never repacked. */
  archived: boolean;
}

export interface LiveEnvelope {
  length: number;
  id: Buffer;
  plainLength: number;
}

export interface GcPlan {
  /** Packs no index references. */
  remove: PackObject[];
  /** Packs whose live envelopes are copied into new packs; each is removed once copied. */
  repack: PackObject[];
  /** Packs that stay as they are. */
  keep: PackObject[];
}

/** Every pack's live envelopes, by offset, from the indexes that will remain. */
export function liveEnvelopes(indexes: readonly Pick<BackupIndex, 'packs' | 'entries'>[]): Map<string, Map<number, LiveEnvelope>> {
  const live = new Map<string, Map<number, LiveEnvelope>>();
  for (const index of indexes) {
    const t = index.entries;
    for (let r = 0; r < t.length * 2; r++) {
      if (!t.hasRef(r)) continue;
      const p = index.packs[t.refPack(r)]!;
      let m = live.get(p);
      if (!m) {
        m = new Map<number, LiveEnvelope>();
        live.set(p, m);
      }
      m.set(t.refOffset(r), { length: t.refLength(r), id: t.refId(r), plainLength: t.refPlain(r) });
    }
  }
  return live;
}

/**
 * `repackBelow`: a pack whose referenced bytes are less than this share of its size is repacked
 * (0 disables repacking).
 */
export function planGc(packs: readonly PackObject[], live: ReadonlyMap<string, ReadonlyMap<number, LiveEnvelope>>, repackBelow: number): GcPlan {
  const plan: GcPlan = { remove: [], repack: [], keep: [] };
  for (const p of packs) {
    const m = live.get(p.id);
    if (!m) {
      plan.remove.push(p);
      continue;
    }
    let used = 0;
    for (const v of m.values()) used += v.length;
    if (!p.archived && used < p.size * repackBelow) plan.repack.push(p);
    else plan.keep.push(p);
  }
  return plan;
}
