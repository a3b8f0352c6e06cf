/**
 * blksnap: the typed API over the kernel module (or its fake).
 *
 * Selecting the driver: BKP_BLKSNAP_FAKE=<state dir> makes every process use the fake in that
 * directory (tests drive the real `bkp` binary with it); otherwise the control device is
 * `controlDevice` (--blksnap-device), else /dev/blksnap, else /dev/veeamblksnap.
 */
import { BlksnapUnavailableError } from '../errors.js';
import { Blksnap } from './blksnap.js';
import { KernelDriver, type BlksnapDriver } from './driver.js';
import { BlksnapFake } from './fake.js';

export * from './abi.js';
export * from './blksnap.js';
export * from './cbt.js';
export * from './cleanup.js';
export * from './devices.js';
export * from './diff-storage.js';
export * from './driver.js';
export * from './errors.js';
export * from './session.js';
export { BlksnapFake, DEFAULT_FAKE_CONFIG, type FakeConfig, type FakeState } from './fake.js';

export const FAKE_ENV = 'BKP_BLKSNAP_FAKE';

export interface OpenBlksnapOptions {
  /** --blksnap-device: the control device path. */
  controlDevice?: string;
  env?: NodeJS.ProcessEnv;
}

export async function openDriver(opts: OpenBlksnapOptions = {}): Promise<BlksnapDriver> {
  const fakeDir = (opts.env ?? process.env)[FAKE_ENV];
  if (fakeDir) return BlksnapFake.open(fakeDir);
  return KernelDriver.open(opts.controlDevice);
}

/** The module, or BlksnapUnavailableError / PermissionError. */
export async function openBlksnap(opts: OpenBlksnapOptions = {}): Promise<Blksnap> {
  return new Blksnap(await openDriver(opts));
}

/** The module, or null when it is not loaded (callers fall back to direct reads). */
export async function tryOpenBlksnap(opts: OpenBlksnapOptions = {}): Promise<Blksnap | null> {
  try {
    return await openBlksnap(opts);
  } catch (e) {
    if (e instanceof BlksnapUnavailableError) return null;
    throw e;
  }
}
