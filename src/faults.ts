/**
 * Named points in the product where tests act at an exact moment: crash points (the process
 * kills itself just before an index commit, which a timer could only hit by luck) and pause
 * points (wait while a test writes to a device mid-snapshot, or sends a signal mid-backup).
 *
 * bkp installs no hooks: every point is a no-op call. The tests' entry point
 * (test/bin/bkp.ts) installs hooks driven by its environment; the names of the
 * points are listed in CONTRIBUTING.md.
 */
export interface FaultHooks {
  /** Called at every crash point; may kill the process. */
  crash(name: string): void;
  /** Called at every pause point; bkp waits for the promise. */
  pause(name: string): Promise<void>;
}

let hooks: FaultHooks | undefined;

/** Installs the hooks for the rest of the process (test entry points only). */
export function installFaultHooks(h: FaultHooks): void {
  hooks = h;
}

export function crashPoint(name: string): void {
  hooks?.crash(name);
}

export async function pausePoint(name: string): Promise<void> {
  if (hooks) await hooks.pause(name);
}
