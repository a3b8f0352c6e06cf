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
import { completeJobs } from './completion.js';

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
    process.stderr.write(`bkp: ${e.message}\n`);
    if (process.env.BKP_DEBUG === '1' && e.cause) process.stderr.write(`${String((e.cause as Error).stack ?? e.cause)}\n`);
    jsonError(e.message, e.exitCode);
    return e.exitCode;
  }
  const err = e as Error;
  process.stderr.write(`bkp: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env.BKP_DEBUG === '1') process.stderr.write(`${err?.stack ?? ''}\n`);
  else process.stderr.write('bkp: this is a bug; run again with BKP_DEBUG=1 for details and report it\n');
  jsonError(`internal error: ${err?.message ?? String(e)}`, ExitCode.FAILURE);
  return ExitCode.FAILURE;
}

export async function main(argv: string[]): Promise<number> {
  handleStopSignals();

  const cli = yargs(argv)
    .scriptName('bkp')
    .usage('bkp: incremental backups of Linux block devices\n\nUsage: bkp <command> [options]')
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print errors only (for cron)' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' })
    .option('config', { type: 'string', describe: 'configuration file for bkp run (default $BKP_CONFIG, else /etc/bkp/config.json)' })
    .command(all as never)
    .completion('completion', 'print a bash/zsh completion script (bkp completion >> ~/.bashrc)', completeJobs)
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
