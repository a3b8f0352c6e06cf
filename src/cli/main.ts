/**
 * bkp's entry point: yargs wiring, signal handling, and the one place where errors become
 * a line on stderr and an exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { all } from './commands.js';
import { runExitHooks, stopNote, stoppedBy } from './context.js';
import { handleStopSignals } from './signals.js';
import { BkpError, ExitCode, UsageError } from '../errors.js';
import { TOOL_VERSION } from '../version.js';
import { completeJobs, completionCommand, HIDDEN_COMPLETION_COMMAND } from './completion.js';
import { usageProblem } from './usage-check.js';
import { oneLine } from '../shared/one-line.js';

/** What the middleware reads of yargs beyond its typings (yargs 18). */
interface YargsInternals {
  getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> };
  getInternalMethods(): {
    getContext(): { commands: string[] };
    getCommandInstance(): { getCommands(): string[] };
    /** [command, description, …] of each command shown in --help (no aliases, no hidden ones). */
    getUsageInstance(): { getCommands(): Array<[string, ...unknown[]]> };
  };
}

/** With --json, a failed command still prints one JSON object on stdout (docs/schema/error.schema.json). */
let jsonErrors = false;

function jsonError(message: string, exitCode: number): void {
  if (jsonErrors) process.stdout.write(`${JSON.stringify({ error: { message, exitCode } }, null, 2)}\n`);
}

function report(e: unknown): number {
  if (stoppedBy) {
    const code = stoppedBy === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED;
    process.stderr.write(`bkp: stopped by ${stoppedBy}; ${stopNote()}\n`);
    jsonError(`stopped by ${stoppedBy}`, code);
    return code;
  }
  if (e instanceof BkpError) {
    const message = oneLine(e.message);
    process.stderr.write(`bkp: ${message}\n`);
    if (process.env.BKP_DEBUG === '1' && e.cause) process.stderr.write(`${String((e.cause as Error).stack ?? e.cause)}\n`);
    jsonError(message, e.exitCode);
    return e.exitCode;
  }
  const err = e as Error;
  const message = oneLine(err?.message ?? String(e));
  process.stderr.write(`bkp: internal error: ${message}\n`);
  if (process.env.BKP_DEBUG === '1') process.stderr.write(`${err?.stack ?? ''}\n`);
  else process.stderr.write('bkp: this is a bug; run again with BKP_DEBUG=1 for details and report it\n');
  jsonError(`internal error: ${message}`, ExitCode.FAILURE);
  return ExitCode.FAILURE;
}

export async function main(argv: string[]): Promise<number> {
  handleStopSignals();

  // runs in the context of the command being parsed, before yargs validates it (yargs passes
  // its instance as the second argument, which its typings leave out)
  const checkUsage = (parsed: { _: Array<string | number>; help?: boolean }, y: YargsInternals) => {
    // `bkp snapshot --help` shows the group's help; a shell asking for completions gets them
    if (parsed.help || argv.includes('--get-yargs-completions')) return;
    const opts = y.getOptions();
    const problem = usageProblem({
      path: y.getInternalMethods().getContext().commands,
      subcommands: y.getInternalMethods().getCommandInstance().getCommands().filter((c) => c !== HIDDEN_COMPLETION_COMMAND),
      shown: y.getInternalMethods().getUsageInstance().getCommands().map((c) => c[0].split(' ')[0]!),
      options: [...Object.keys(opts.key), ...Object.values(opts.alias).flat()],
      words: parsed._.map(String),
      raw: argv,
    });
    if (problem) throw new UsageError(problem);
  };
  const cli = yargs(argv)
    .scriptName('bkp')
    .usage('bkp: incremental backups of Linux block devices\n\nUsage: bkp <command> [options]')
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print errors only (for cron)' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' })
    .option('config', { type: 'string', describe: 'configuration file for bkp run (default $BKP_CONFIG, else /etc/bkp/config.json)' })
    .command(all as never)
    .command(completionCommand(() => (cli as unknown as { showCompletionScript($0: string, cmd: string): void }).showCompletionScript('bkp', 'completion')) as never)
    // yargs answers --get-yargs-completions through a completion command of its own, which prints
    // the script even for `completion --help`: it gets a hidden name, `bkp completion` is ours
    .completion(HIDDEN_COMPLETION_COMMAND, false, completeJobs)
    .middleware(checkUsage as never, true)
    .demandCommand(1, 'name a command (bkp --help lists them)')
    .strict()
    .version(TOOL_VERSION)
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(`${msg} (see bkp --help)`);
    })
    .exitProcess(false);
  jsonErrors = argv.includes('--json');
  let code: number;
  try {
    await cli.parseAsync();
    code = stoppedBy ? report(undefined) : typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (e) {
    code = report(e);
  }
  return runExitHooks(code);
}

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e);
  },
);
