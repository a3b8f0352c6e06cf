/** What every command gets: how to talk, whether to print JSON, and the stop signal. */
import { createReporter, type Reporter } from '../report/reporter.js';
import type { S3Args } from './s3-options.js';

export interface GlobalArgs extends S3Args {
  repo?: string;
  quiet?: boolean;
  json?: boolean;
}

export interface CommandContext {
  reporter: Reporter;
  json: boolean;
  signal: AbortSignal;
  /** Prints a result on stdout: JSON when --json, else the human text. */
  out(human: string, json: unknown): void;
}

const controller = new AbortController();
export const stopSignal = controller.signal;
export let stoppedBy: NodeJS.Signals | undefined;

const cleanups = new Set<() => Promise<void>>();

/** Work that must happen even when a second signal makes bkp exit at once (releasing a snapshot). */
export function registerCleanup(fn: () => Promise<void>): void {
  cleanups.add(fn);
}

/** Runs the registered cleanups, waiting at most `ms`. */
export async function runCleanups(ms: number): Promise<void> {
  const all = Promise.allSettled([...cleanups].map((f) => f()));
  await Promise.race([all, new Promise((r) => setTimeout(r, ms).unref())]);
}

export function stop(sig: NodeJS.Signals): void {
  stoppedBy ??= sig;
  controller.abort(new Error(`stopped by ${sig}`));
}

export function context(args: GlobalArgs): CommandContext {
  const json = !!args.json;
  return {
    reporter: createReporter({ quiet: !!args.quiet }),
    json,
    signal: stopSignal,
    out(human, data) {
      process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : human.endsWith('\n') || human === '' ? human : `${human}\n`);
    },
  };
}
