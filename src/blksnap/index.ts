/**
 * blksnap: the typed API over the kernel module.
 *
 * Selecting the driver: the control device is `controlDevice` (--blksnap-device), else
 * /dev/blksnap, else /dev/veeamblksnap. Another driver (the tests' userspace fake) can be put in
 * its place with useBlksnapDriver by an entry point that wraps the CLI; bkp itself never does.
 */
import { BlksnapUnavailableError } from '../errors.js';
import { Blksnap } from './blksnap.js';
import { KernelDriver, type BlksnapDriver } from './driver.js';

export * from './abi.js';
export * from './blksnap.js';
export * from './cbt.js';
export * from './cleanup.js';
export * from './devices.js';
export * from './diff-storage.js';
export * from './driver.js';
export * from './errors.js';
export * from './session.js';

export interface OpenBlksnapOptions {
  /** --blksnap-device: the control device path. */
  controlDevice?: string;
}

/** Opens a driver; the kernel's unless another was installed. */
export type DriverFactory = (opts: OpenBlksnapOptions) => Promise<BlksnapDriver>;

let driverFactory: DriverFactory = (opts) => KernelDriver.open(opts.controlDevice);

/** Replaces the kernel driver for the rest of the process (test entry points only). */
export function useBlksnapDriver(factory: DriverFactory): void {
  driverFactory = factory;
}

export function openDriver(opts: OpenBlksnapOptions = {}): Promise<BlksnapDriver> {
  return driverFactory(opts);
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
