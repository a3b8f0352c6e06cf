/**
 * Deterministic test data that looks like a disk: runs of zeros, incompressible bytes,
 * repetitive text, and a few repeated blocks (dedup), from a seed.
 */
import { createHash } from 'node:crypto';
import { promises as fs, createReadStream } from 'node:fs';

function prngBytes(seed: string, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let counter = 0;
  for (let o = 0; o < n; o += 32) {
    const h = createHash('sha256').update(`${seed}:${counter++}`).digest();
    h.copy(out, o, 0, Math.min(32, n - o));
  }
  return out;
}

const WORDS = ['backup', 'disk', 'sector', 'chunk', 'restore', 'kernel', 'snapshot', 'tracker', '\n', 'the', 'a', 'of'];

function textBytes(seed: number, n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  let x = seed || 1;
  while (len <= n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const w = WORDS[x % WORDS.length]!;
    parts.push(w);
    len += w.length + 1;
  }
  return Buffer.from(parts.join(' ')).subarray(0, n);
}

/** Fills `size` bytes at `offset` of an open file with mixed content in 256 KiB pieces. */
export async function writeMixed(path: string, size: number, seed: string, offset = 0): Promise<void> {
  const piece = 256 * 1024;
  const fh = await fs.open(path, 'r+').catch(() => fs.open(path, 'w+'));
  try {
    let n = 0;
    for (let o = 0; o < size; o += piece, n++) {
      const len = Math.min(piece, size - o);
      // free space comes in large extents (2 MiB here), data in smaller pieces of mixed kinds
      const extentFree = createHash('sha256').update(`${seed}/extent/${Math.floor(o / (2 * 1024 * 1024))}`).digest()[0]! % 5 < 2;
      const kind = extentFree ? 0 : 1 + (createHash('sha256').update(`${seed}/${n}`).digest()[0]! % 4);
      let buf: Buffer;
      if (kind === 0 || kind === 1) buf = Buffer.alloc(len); // zeros: free space
      else if (kind === 2) buf = prngBytes(`${seed}/${n}`, len); // incompressible
      else if (kind === 3) buf = textBytes(n + 1, len); // compressible
      else buf = textBytes(7, len); // the same block again and again: dedup
      await fh.write(buf, 0, len, offset + o);
    }
  } finally {
    await fh.close();
  }
}

export async function makeImage(path: string, size: number, seed: string): Promise<void> {
  const fh = await fs.open(path, 'w');
  await fh.truncate(size);
  await fh.close();
  await writeMixed(path, size, seed);
}

/** SHA-256 of the first `length` bytes of a file or device (all of it when omitted). */
export function sha256Of(path: string, length?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = createReadStream(path, length === undefined ? {} : { start: 0, end: length - 1 });
    s.on('data', (d) => h.update(d));
    s.on('error', reject);
    s.on('end', () => resolve(h.digest('hex')));
  });
}

/** Overwrites `count` random 4 KiB blocks, as a running system would. */
export async function scribble(path: string, size: number, count: number, seed: string): Promise<void> {
  const fh = await fs.open(path, 'r+');
  try {
    for (let i = 0; i < count; i++) {
      const r = createHash('sha256').update(`${seed}#${i}`).digest();
      const block = r.readUInt32LE(0) % Math.floor(size / 4096);
      await fh.write(prngBytes(`${seed}@${i}`, 4096), 0, 4096, block * 4096);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}
