/** Sizes as users write them: 1048576, 1M, 1MiB, 4m, 64K. Powers of 1024. */
import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** The number of bytes `text` names, or undefined when it is not a positive size. */
export function sizeValue(text: string | number): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(String(text).trim());
  const n = m ? Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export function parseSize(text: string | number, what: string): number {
  const n = sizeValue(text);
  if (n === undefined) throw new UsageError(`${what} ${JSON.stringify(String(text).trim())} is not a size (examples: 1M, 4MiB, 65536)`);
  return n;
}
