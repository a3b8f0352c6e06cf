/**
 * The boundary between the typed API (blksnap.ts) and the kernel.
 *
 * It is ioctl-shaped — `ioctl(request, arg, pointers)` with the raw argument struct — rather than
 * typed, so that everything above it (the encoders in abi.ts, the count protocols, the errno
 * mapping) runs unchanged against the fake, which decodes the very bytes the kernel would read.
 * The only other kernel surfaces are device nodes: resolving a device path to the id the module
 * knows, and opening a snapshot image; those are here too so the fake can stand in for them.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { BlockSource } from '../device/source.js';
import { PermissionError, SnapshotFailedError, isSystemError } from '../errors.js';
import { native, type PointerArg } from '../native/index.js';
import { devKey, type DevId } from './abi.js';
import { decodeDev, devIdOf } from './devices.js';
import { moduleNotLoaded } from './errors.js';

export type { PointerArg } from '../native/index.js';

export interface BlksnapDriver {
  /** 'blksnap', 'veeamblksnap' or 'fake' (for status output). */
  readonly moduleName: string;
  /** The control device (or the fake's state directory). */
  readonly controlPath: string;
  /** One control: resolves with the ioctl's return value, rejects with an errno-coded Error. */
  ioctl(request: number, arg: Buffer, pointers: readonly PointerArg[]): Promise<number>;
  /** The id the module knows a device by. */
  resolveDevice(path: string): Promise<DevId>;
  /** Where the image device node of `image` is (informational for the fake). */
  imagePath(image: DevId): string;
  /** Open a snapshot image for reading; waits for its device node to appear. */
  openImage(image: DevId, timeoutMs?: number): Promise<BlockSource>;
  close(): Promise<void>;
}

/** Control device → image node prefix, in the order they are tried. */
export const CONTROL_DEVICES = [
  { moduleName: 'blksnap', control: '/dev/blksnap', imagePrefix: '/dev/blksnap-image' },
  { moduleName: 'veeamblksnap', control: '/dev/veeamblksnap', imagePrefix: '/dev/veeamblksnapimg' },
] as const;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A block device opened read-only as a BlockSource (snapshot images). */
export async function openBlockDeviceSource(path: string): Promise<BlockSource> {
  const fh = await open(path, 'r');
  try {
    const size = native().blockDeviceSize(fh.fd);
    const { logical } = native().sectorSizes(fh.fd);
    return {
      path,
      size,
      logicalBlockSize: logical,
      async read(buffer, length, position) {
        let done = 0;
        while (done < length && position + done < size) {
          const { bytesRead } = await fh.read(buffer, done, Math.min(length - done, size - position - done), position + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      },
      close: () => fh.close(),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

export class KernelDriver implements BlksnapDriver {
  private constructor(
    readonly moduleName: string,
    readonly controlPath: string,
    private readonly imagePrefix: string,
    private readonly fh: FileHandle,
  ) {}

  /**
   * Open the control device: `controlDevice` if given (images then follow its naming: a path
   * containing "veeam" means veeamblksnapimg), else /dev/blksnap, else /dev/veeamblksnap.
   */
  static async open(controlDevice?: string): Promise<KernelDriver> {
    const candidates = controlDevice
      ? [
          controlDevice.includes('veeam')
            ? { ...CONTROL_DEVICES[1], control: controlDevice }
            : { ...CONTROL_DEVICES[0], control: controlDevice },
        ]
      : CONTROL_DEVICES;
    for (const c of candidates) {
      try {
        const fh = await open(c.control, 'r+');
        return new KernelDriver(c.moduleName, c.control, c.imagePrefix, fh);
      } catch (e) {
        if (isSystemError(e, 'ENOENT') || isSystemError(e, 'ENXIO') || isSystemError(e, 'ENODEV')) continue;
        if (isSystemError(e, 'EACCES') || isSystemError(e, 'EPERM')) {
          throw new PermissionError(`cannot open ${c.control} (${(e as Error & { code: string }).code}): bkp needs root to use blksnap`, { cause: e });
        }
        throw e;
      }
    }
    throw moduleNotLoaded(candidates.map((c) => c.control));
  }

  ioctl(request: number, arg: Buffer, pointers: readonly PointerArg[]): Promise<number> {
    return native().ioctl(this.fh.fd, request, arg, pointers);
  }

  resolveDevice(path: string): Promise<DevId> {
    return devIdOf(path);
  }

  imagePath(image: DevId): string {
    return `${this.imagePrefix}${image.minor}`;
  }

  /** udev creates the image node asynchronously after TAKE: poll for it, and check it is the right device. */
  async openImage(image: DevId, timeoutMs = 10_000): Promise<BlockSource> {
    const path = this.imagePath(image);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const st = await stat(path, { bigint: true });
        const got = decodeDev(st.rdev);
        if (st.isBlockDevice() && got.major === image.major && got.minor === image.minor) return await openBlockDeviceSource(path);
      } catch (e) {
        if (!isSystemError(e, 'ENOENT')) throw e;
      }
      if (Date.now() > deadline) {
        throw new SnapshotFailedError(`snapshot image ${path} (${devKey(image)}) did not appear within ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
