/** What every command gets: how to talk, whether to print JSON, and the stop signal. */
import { createReporter, type Reporter } from '../report/reporter.js';
import type { S3Args } from './s3-options.js';
import { BkpError, ExitCode } from '../errors.js';
import { oneLine } from '../shared/one-line.js';

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

const exitHooks: Array<(code: number) => Promise<void>> = [];

/** Work done when the command has ended, knowing its exit code (the metrics file). */
export function onExit(fn: (code: number) => Promise<void>): void {
  exitHooks.push(fn);
}

/**
 * Runs the exit hooks; a hook that fails prints its error and, when the command itself succeeded,
 * turns the exit code into 4: its work is stored (a backup committed), only the task after it
 * failed — never a failure code that reads as "nothing stored".
 */
export async function runExitHooks(code: number): Promise<number> {
  for (const fn of exitHooks.splice(0)) {
    try {
      await fn(code);
    } catch (e) {
      const why = e instanceof BkpError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`;
      process.stderr.write(`bkp: ${oneLine(`${code === ExitCode.OK ? 'done, but ' : ''}${why}`)}\n`);
      if (code === ExitCode.OK) code = ExitCode.WARNINGS;
    }
  }
  return code;
}

const BACKUP_STOP_NOTE = 'nothing was committed for the device in progress';
let note = BACKUP_STOP_NOTE;

/** What a stopped command leaves behind, said after "stopped by SIGINT;" (a backup's unless a command sets its own). */
export function setStopNote(text: string): void {
  note = text;
}

export function stopNote(): string {
  return note;
}

export function stop(sig: NodeJS.Signals): void {
  stoppedBy ??= sig;
  controller.abort(new Error(`stopped by ${sig}`));
}

export function context(args: GlobalArgs): CommandContext {
  const json = !!args.json;
  const quiet = !!args.quiet;
  return {
    reporter: createReporter({ quiet }),
    json,
    signal: stopSignal,
    out(human, data) {
      if (quiet && !json) return; // --quiet: errors only (JSON was asked for explicitly)
      process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : human.endsWith('\n') || human === '' ? human : `${human}\n`);
    },
  };
}
