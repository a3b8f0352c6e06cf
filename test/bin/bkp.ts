/**
 * bkp as the end-to-end tests run it: the real command line (bin/bkp.js, then src/cli/main.ts),
 * with the test seams that the product binary does not have, installed from the environment.
 * It is named bkp.js like the product's entry, so that bkp sees these processes as bkp in /proc
 * (src/device/readers.ts):
 *
 * - BKP_BLKSNAP_FAKE=DIR: the userspace fake of the blksnap module whose state is in DIR
 *   (test/support/blksnap/fake.ts) stands in for the kernel module.
 * - BKP_CRASH_AT=NAME[:N]: the process kills itself with SIGKILL the N-th time (default 1st) it
 *   passes the crash point NAME.
 * - BKP_PAUSE_AT=NAME:FILE: at the pause point NAME the process creates FILE.reached and waits
 *   until it is removed.
 *
 * test/support/env.ts spawns this file (constant BKP); the point names are in CONTRIBUTING.md.
 */
// As bin/bkp.js, before anything can start the libuv pool: the blksnap event wait holds a thread.
process.env.UV_THREADPOOL_SIZE ??= '8';

const { installFaultHooks } = await import('../../src/faults.js');
const { useBlksnapDriver } = await import('../../src/blksnap/index.js');

const fakeDir = process.env.BKP_BLKSNAP_FAKE;
if (fakeDir) {
  const { BlksnapFake } = await import('../support/blksnap/fake.js');
  useBlksnapDriver(() => BlksnapFake.open(fakeDir));
}

const crashSpec = process.env.BKP_CRASH_AT;
const pauseSpec = process.env.BKP_PAUSE_AT;
if (crashSpec || pauseSpec) {
  const [crashAt, nth] = crashSpec ? [crashSpec.split(':')[0], Number(crashSpec.split(':')[1] ?? 1)] : [undefined, 0];
  const colon = pauseSpec ? pauseSpec.indexOf(':') : -1;
  const [pauseAt, flagBase] = pauseSpec ? [pauseSpec.slice(0, colon), pauseSpec.slice(colon + 1)] : [undefined, ''];
  const { writeFileSync, existsSync } = await import('node:fs');
  let seen = 0;
  installFaultHooks({
    crash(name) {
      if (name === crashAt && ++seen >= nth) process.kill(process.pid, 'SIGKILL');
    },
    async pause(name) {
      if (name !== pauseAt) return;
      const flag = `${flagBase}.reached`;
      writeFileSync(flag, String(process.pid));
      while (existsSync(flag)) await new Promise((r) => setTimeout(r, 20));
    },
  });
}

// the product's own entry: environment defaults, compile cache, then the CLI
await import(new URL('../../../bin/bkp.js', import.meta.url).href);
