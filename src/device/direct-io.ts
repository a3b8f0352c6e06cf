/**
 * O_DIRECT for block devices: reads and writes bypass the page cache, so a backup of a whole
 * disk neither evicts the server's cache nor suffers the kernel's erratic buffered throughput on
 * large sequential I/O. A request qualifies when its memory, offset and length are aligned; others
 * (probes, short tails) go through a second, buffered descriptor of the same device.
 */
import { promises as fs, constants as fsc } from 'node:fs';
import { native } from '../native/index.js';
import { isSystemError } from '../errors.js';

export function isAligned(buf: Buffer, length: number, position: number, blockSize: number): boolean {
  if (length % blockSize !== 0 || position % blockSize !== 0) return false;
  const ab = buf.buffer as ArrayBuffer;
  return (buf.byteOffset - native().alignedOffset(ab, 4096)) % 4096 === 0;
}

/** Opens `path` with O_DIRECT added to `flags`, or returns null where the device refuses it. */
export async function openDirect(path: string, flags: number): Promise<fs.FileHandle | null> {
  try {
    return await fs.open(path, flags | fsc.O_DIRECT);
  } catch (e) {
    if (isSystemError(e, 'EINVAL')) return null;
    throw e;
  }
}
