/** A BlockSource over a block device or image file read with positional reads. */
import { promises as fs, constants as fsc } from 'node:fs';
import type { BlockSource } from './source.js';
import { deviceFacts } from './facts.js';
import { fromSystemError } from '../errors.js';

export async function openFileSource(path: string): Promise<BlockSource> {
  const facts = await deviceFacts(path, 'device');
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, fsc.O_RDONLY | fsc.O_NOATIME);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPERM') {
      // O_NOATIME is refused on files we do not own
      try {
        fh = await fs.open(path, fsc.O_RDONLY);
      } catch (e2) {
        throw fromSystemError(e2, 'device', path);
      }
    } else {
      throw fromSystemError(e, 'device', path);
    }
  }
  return {
    path,
    size: facts.size,
    logicalBlockSize: facts.logicalBlockSize,
    async read(buffer, length, position) {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    },
    close: () => fh.close(),
  };
}
