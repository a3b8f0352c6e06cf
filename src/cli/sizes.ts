/** Sizes as users write them: 1048576, 1M, 1MiB, 4m, 64K. Powers of 1024. */
import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseSize(text: string | number, what: string): number {
  const s = String(text).trim();
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s);
  const n = m ? Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${what} ${JSON.stringify(s)} is not a size (examples: 1M, 4MiB, 65536)`);
  return n;
}
