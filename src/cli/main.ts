/**
 * bkp's entry point: yargs wiring, signal handling, and the one place where errors become
 * a line on stderr and an exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { all } from './commands.js';
import { runCleanups, stop, stoppedBy } from './context.js';
import { BkpError, ExitCode, UsageError } from '../errors.js';
import { TOOL_VERSION } from '../version.js';

function report(e: unknown): number {
  if (stoppedBy) {
    process.stderr.write(`bkp: stopped by ${stoppedBy}; nothing was committed for the device in progress\n`);
    return stoppedBy === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED;
  }
  if (e instanceof BkpError) {
    process.stderr.write(`bkp: ${e.message}\n`);
    if (process.env.BKP_DEBUG === '1' && e.cause) process.stderr.write(`${String((e.cause as Error).stack ?? e.cause)}\n`);
    return e.exitCode;
  }
  const err = e as Error;
  process.stderr.write(`bkp: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env.BKP_DEBUG === '1') process.stderr.write(`${err?.stack ?? ''}\n`);
  else process.stderr.write('bkp: this is a bug; run again with BKP_DEBUG=1 for details and report it\n');
  return ExitCode.FAILURE;
}

export async function main(argv: string[]): Promise<number> {
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`bkp: ${sig} again: releasing the snapshot and exiting now\n`);
      void runCleanups(10_000).finally(() => process.exit(sig === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED));
      return;
    }
    process.stderr.write(`bkp: ${sig}: stopping (cleaning up; send again to exit at once)\n`);
    stop(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const cli = yargs(argv)
    .scriptName('bkp')
    .usage('bkp: incremental backups of Linux block devices\n\nUsage: bkp <command> [options]')
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print errors only (for cron)' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' })
    .command(all as never)
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
  try {
    await cli.parseAsync();
  } catch (e) {
    return report(e);
  }
  if (stoppedBy) return report(undefined);
  return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
}

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e);
  },
);
