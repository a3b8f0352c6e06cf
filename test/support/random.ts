/** Seeded randomness for property and fuzz tests: a failure names its seed, and BKP_FUZZ_SEED replays it. */

/** mulberry32: a small, fast, deterministic PRNG giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this run: BKP_FUZZ_SEED when set, else a fresh random one. */
export function fuzzSeed(): number {
  return Number(process.env.BKP_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
}
