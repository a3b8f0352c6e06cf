/**
 * Shell completion (`bkp completion` prints the script): yargs completes commands and flags;
 * after `bkp run` it offers the job names of the configuration file.
 */
import { readFileSync } from 'node:fs';
import { parseConfig } from '../config/config.js';
import { configPathOf } from '../config/load.js';

export function completeJobs(
  current: string,
  argv: { _?: Array<string | number>; config?: string },
  defaults: (onCompleted?: (err: Error | null, completions: string[] | undefined) => void) => unknown,
  done: (completions: string[]) => unknown,
): void {
  const words = (argv._ ?? []).map(String);
  // argv._ holds the words typed so far, the one being completed last
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
