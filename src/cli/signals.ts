/**
 * SIGINT and SIGTERM. The first asks the command to stop (its abort signal) and gives it a bounded
 * time to wind down; the second — or a command still running when that time is up — ends bkp at
 * once, after the registered cleanups (releasing a snapshot, removing a partial image) had a
 * bounded time of their own.
 *
 * Ending at once cannot be process.exit(): Node waits at exit for the threads of its worker pool,
 * and one of them may be blocked for good (a read from a device or file that never answers), so
 * the process would stay. bkp ends by the signal itself, with its default action instead: the
 * shell then reports 130 (SIGINT) or 143 (SIGTERM), the codes of a clean stop.
 */
import { runCleanups, stop, stopNote } from './context.js';

export interface StopTimes {
  /** How long the command may take to stop after the first signal. */
  graceMs: number;
  /** How long the registered cleanups may take before bkp ends regardless. */
  cleanupMs: number;
}

export const STOP_TIMES: StopTimes = { graceMs: 5_000, cleanupMs: 10_000 };

export function handleStopSignals(times: StopTimes = STOP_TIMES): void {
  let signals = 0;
  let ending = false;
  const endNow = async (sig: NodeJS.Signals, why: string) => {
    if (ending) return reraise(sig); // a signal during the cleanups: no more waiting
    ending = true;
    process.stderr.write(`bkp: ${why}: exiting now\n`);
    await runCleanups(times.cleanupMs);
    process.stderr.write(`bkp: stopped by ${sig}; ${stopNote()}\n`);
    reraise(sig);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      void endNow(sig, `${sig} again`);
      return;
    }
    process.stderr.write(`bkp: ${sig}: stopping (cleaning up; send again to exit at once)\n`);
    stop(sig);
    // unref: a command that stops in time exits without waiting for this
    setTimeout(() => void endNow(sig, `still running ${times.graceMs / 1000} s after ${sig}`), times.graceMs).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function reraise(sig: NodeJS.Signals): void {
  process.removeAllListeners(sig); // back to the default action: the kernel ends the process
  process.kill(process.pid, sig);
}
