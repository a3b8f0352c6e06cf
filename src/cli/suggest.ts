/** "Did you mean …?": the closest known word to a mistyped one (pure). */

/** Edit distance counting a swap of two neighbouring letters as one edit (devcie → device: 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known word closest to `word`, if it is close enough to be a typo (at most 2 edits, and
 * fewer than half the word's letters), or a known word that `word` begins (`--dev` → `--device`).
 */
export function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(word.toLowerCase(), k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  if (best !== undefined && bestD <= 2 && bestD * 2 < Math.max(word.length, 2)) return best;
  const prefixed = known.filter((k) => word.length >= 2 && k.startsWith(word));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}
