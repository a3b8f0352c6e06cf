/** A BlockSource over a block device (O_DIRECT where aligned) or an image file (buffered). */
import { promises as fs, constants as fsc } from 'node:fs';
import type { BlockSource } from './source.js';
import { sourceFacts } from './facts.js';
import { isAligned, openDirect } from './direct-io.js';
import { fromSystemError } from '../errors.js';

async function readFully(fh: fs.FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export async function openFileSource(path: string): Promise<BlockSource> {
  const facts = await sourceFacts(path);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, fsc.O_RDONLY | fsc.O_NOATIME);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw fromSystemError(e, 'device', path);
    // O_NOATIME is refused on files we do not own
    fh = await fs.open(path, fsc.O_RDONLY).catch((e2: unknown) => {
      throw fromSystemError(e2, 'device', path);
    });
  }
  const direct = facts.kind === 'block' ? await openDirect(path, fsc.O_RDONLY).catch(() => null) : null;
  const block = Math.max(512, facts.logicalBlockSize);
  return {
    path,
    size: facts.size,
    logicalBlockSize: facts.logicalBlockSize,
    read(buffer, length, position) {
      const h = direct && isAligned(buffer, length, position, block) ? direct : fh;
      return readFully(h, buffer, length, position);
    },
    async close() {
      await direct?.close();
      await fh.close();
    },
  };
}
