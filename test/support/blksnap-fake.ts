/**
 * Harness for blksnap tests: a fresh fake module in a temp directory, originals on real loop
 * devices, and — when BKP_TEST_BLKSNAP_REAL=1 on a machine with the module — the real module.
 *
 * The CLI uses the same fake when run with BKP_BLKSNAP_FAKE=<harness.fakeDir> (`harness.env`).
 * The module's own knobs have one name for both kinds: `setPortion` (the module's
 * diff_storage_minimum parameter) and `reloadModule` (rmmod + insmod, which drops every tracker).
 */
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Blksnap } from '../../src/blksnap/blksnap.js';
import { KernelDriver } from '../../src/blksnap/driver.js';
import { BlksnapFake, type FakeConfig } from './blksnap/fake.js';
import { attachLoop, type Loop } from './loop.js';
import { sh, tempDir } from './env.js';

export interface BlksnapHarness {
  kind: 'fake' | 'real';
  blksnap: Blksnap;
  /** The fake, when kind is 'fake'. */
  fake: BlksnapFake | undefined;
  /** Temp directory (fake state lives in `fakeDir` under it). */
  dir: string;
  fakeDir: string;
  /** A new loop device over a sparse file of `size` bytes, filled with `fill` when given. */
  loop(size: number, fill?: (offset: number) => number): Promise<string>;
  /** Change a loop device's size (truncate its file, losetup -c). */
  resize(device: string, size: number): Promise<void>;
  /** Write to an original as applications do: through the fake, or straight to the device (tracked by the real module). */
  write(device: string, offset: number, data: Buffer): Promise<void>;
  /** Environment for a `bkp` run that must see this module (the fake's directory, or nothing). */
  env: NodeJS.ProcessEnv;
  /** Sets the module's minimum difference-storage portion (its low-free-space request), in sectors; returns the previous value. */
  setPortion(sectors: number): Promise<number>;
  /** Unloads and loads the module again: trackers and snapshots are gone (the real one needs no open control device meanwhile, so `blksnap` is reopened). */
  reloadModule(): Promise<void>;
  /** Destroys all snapshots, removes trackers we created, detaches loops, deletes the temp dir. */
  cleanup(): Promise<void>;
}

export const REAL = process.env.BKP_TEST_BLKSNAP_REAL === '1';

const PORTION_PARAMETER = '/sys/module/blksnap/parameters/diff_storage_minimum';

export async function blksnapHarness(kind: 'fake' | 'real', config: Partial<FakeConfig> = {}): Promise<BlksnapHarness> {
  const tmp = tempDir('bkp-blksnap-');
  const fakeDir = join(tmp.dir, 'fake');
  const loops: Loop[] = [];
  const files = new Map<string, string>();
  const fake = kind === 'fake' ? await BlksnapFake.open(fakeDir, config) : undefined;
  let blksnap = new Blksnap(fake ?? (await KernelDriver.open()));
  return {
    kind,
    get blksnap() {
      return blksnap;
    },
    fake,
    env: fake ? { BKP_BLKSNAP_FAKE: fakeDir } : {},
    async setPortion(sectors) {
      if (fake) {
        const before = (await fake.state()).config.portionSectors;
        await fake.setConfig({ portionSectors: sectors });
        return before;
      }
      const before = Number((await readFile(PORTION_PARAMETER, 'utf8')).trim());
      await writeFile(PORTION_PARAMETER, `${sectors}\n`);
      return before;
    },
    async reloadModule() {
      if (fake) return fake.reload();
      await blksnap.close();
      // BKP_TEST_BLKSNAP_MODULE: the .ko to load (the lab's guest); else the installed module
      sh('rmmod', ['blksnap']);
      const ko = process.env.BKP_TEST_BLKSNAP_MODULE;
      if (ko) sh('insmod', [ko]);
      else sh('modprobe', ['blksnap']);
      blksnap = new Blksnap(await KernelDriver.open());
    },
    dir: tmp.dir,
    fakeDir,
    async loop(size, fill) {
      const file = join(tmp.dir, `orig-${loops.length}.img`);
      const fh = await open(file, 'w');
      await fh.truncate(size);
      if (fill) {
        const block = Buffer.alloc(1024 * 1024);
        for (let off = 0; off < size; off += block.length) {
          for (let i = 0; i < block.length; i += 4) block.writeUInt32LE(fill(off + i) >>> 0, i);
          await fh.write(block, 0, Math.min(block.length, size - off), off);
        }
      }
      await fh.close();
      const l = attachLoop(file);
      loops.push(l);
      files.set(l.dev, file);
      return l.dev;
    },
    async resize(device, size) {
      await truncate(files.get(device)!, size);
      sh('losetup', ['-c', device]);
    },
    async write(device, offset, data) {
      if (fake) return fake.write(device, offset, data);
      const fh = await open(device, 'r+');
      try {
        await fh.write(data, 0, data.length, offset);
        await fh.sync();
      } finally {
        await fh.close();
      }
    },
    async cleanup() {
      try {
        if (kind === 'real') {
          // Only our loops' snapshots: snapshots of other devices are not ours to destroy.
          const ours = await Promise.all(loops.map((l) => blksnap.devIdOf(l.dev).catch(() => undefined)));
          for (const id of await blksnap.snapshots().catch(() => [])) {
            const images = await blksnap.snapshot(id).images().catch(() => []);
            if (images.some((im) => ours.some((d) => d && d.major === im.orig.major && d.minor === im.orig.minor))) await blksnap.snapshot(id).destroy().catch(() => undefined);
          }
          for (const d of ours) if (d) await blksnap.removeTracker(d).catch(() => undefined);
        }
        await blksnap.close();
      } finally {
        for (const l of loops) l.detach();
        tmp.cleanup();
      }
    },
  };
}

/** A deterministic 32-bit pattern per byte offset, distinct per seed. */
export function pattern(seed: number): (offset: number) => number {
  return (offset) => Math.imul(offset + 1, 2654435761) ^ seed;
}

export function patternBuffer(seed: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  const f = pattern(seed);
  for (let i = 0; i < length; i += 4) b.writeUInt32LE(f(offset + i) >>> 0, i);
  return b;
}
