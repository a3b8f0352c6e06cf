/**
 * Shell completion: `bkp completion` prints the script; the script asks
 * `bkp --get-yargs-completions WORDS…`, and yargs completes commands and flags — after `bkp run`
 * the job names of the configuration file.
 */
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { parseConfig } from '../config/config.js';
import { configPathOf } from '../config/load.js';
import type { GlobalArgs } from './context.js';

/** The name yargs' own completion command is registered under (hidden; `bkp completion` is ours). */
export const HIDDEN_COMPLETION_COMMAND = '__yargs-completion-script';

export function completionCommand(printScript: () => void): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'completion',
    describe: 'print a bash/zsh completion script (bkp completion > /etc/bash_completion.d/bkp)',
    handler: () => printScript(),
  };
}

/**
 * The words typed after the program name. The installed script passes the whole command line
 * (COMP_WORDS), program name first ("bkp", "/usr/local/bin/bkp"); a caller may also leave it out.
 */
export function typedWords(words: string[]): string[] {
  return words.length > 0 && /(^|\/)bkp(\.js)?$/.test(words[0]!) ? words.slice(1) : words;
}

export function completeJobs(
  current: string,
  argv: { _?: Array<string | number>; config?: string },
  defaults: (onCompleted?: (err: Error | null, completions: string[] | undefined) => void) => unknown,
  done: (completions: string[]) => unknown,
): void {
  // argv._ holds the words typed so far, the one being completed last
  const words = typedWords((argv._ ?? []).map(String));
  if (words[0] === 'run' && words.length <= 2) {
    try {
      const file = configPathOf(argv.config).path;
      const jobs = [...parseConfig(readFileSync(file, 'utf8'), file).jobs.keys()];
      done(jobs.filter((j) => j.startsWith(current)));
      return;
    } catch {
      // no readable configuration: complete as usual
    }
  }
  defaults((_err, completions) => done(completions ?? []));
}
