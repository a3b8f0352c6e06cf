/**
 * What yargs' strict mode says in its own words ("Unknown arguments: repo, device, ful",
 * "Missing required argument: device" for a mistyped --device) said in the user's: the unknown
 * command, subcommand or option named, with the closest valid one. Pure: main.ts feeds it what
 * yargs knows about the command being parsed, before yargs validates it.
 */
import { closest } from './suggest.js';
import { hasControlCharacter, oneLine } from '../shared/one-line.js';

export interface UsageContext {
  /** The command words matched so far: [] at the top, ['snapshot'] in the snapshot group. */
  path: string[];
  /** The subcommands accepted after `path` (none for a command that does the work itself). */
  subcommands: string[];
  /** The subcommands to name in a message (without aliases). */
  shown: string[];
  /** Every option name the command knows, with aliases. */
  options: string[];
  /** The positional words typed (yargs' argv._). */
  words: string[];
  /** The arguments as given. */
  raw: string[];
}

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The option names typed (`--repo x` → repo, `--no-snapshot` → no-snapshot, `-qh` → q, h), up to `--`. */
export function typedOptions(raw: string[]): string[] {
  const out: string[] = [];
  for (const a of raw) {
    if (a === '--') break;
    if (/^-\d/.test(a) || a === '-') continue; // a negative number or stdin: a value, not an option
    if (a.startsWith('--')) out.push(a.slice(2).split('=')[0]!);
    else if (a.startsWith('-')) out.push(...a.slice(1).split('=')[0]!.split(''));
  }
  return out;
}

/** One line naming what is wrong with the command line, or undefined if yargs may go on. */
export function usageProblem(c: UsageContext): string | undefined {
  const bad = c.raw.findIndex(hasControlCharacter);
  if (bad >= 0) {
    return oneLine(`argument ${JSON.stringify(c.raw[bad])} holds a control character (a newline, tab or escape); bkp refuses paths and names that hold one`);
  }
  const where = ['bkp', ...c.path].join(' ');
  if (c.subcommands.length > 0) {
    const word = c.words[c.path.length];
    const valid = c.shown.join(', ');
    if (word === undefined) {
      return c.path.length === 0 ? 'name a command (bkp --help lists them)' : `${where} needs a subcommand: ${valid}`;
    }
    if (!c.subcommands.includes(word)) {
      const guess = closest(word, c.shown);
      const what = c.path.length === 0 ? 'command' : 'subcommand';
      const shown = oneLine(c.path.length === 0 ? word : `${c.path.join(' ')} ${word}`);
      return guess ? `unknown ${what}: ${shown}; did you mean ${[...c.path, guess].join(' ')}?` : `unknown ${what}: ${shown} (${c.path.length === 0 ? 'commands' : `${where} takes`}: ${valid})`;
    }
  }
  const known = new Set(c.options.flatMap((o) => [o, camel(o)]));
  for (const name of typedOptions(c.raw)) {
    if (known.has(name) || (name.startsWith('no-') && known.has(name.slice(3)))) continue;
    const dashes = name.length === 1 ? '-' : '--';
    const guess = closest(name.replace(/^no-/, ''), c.options.filter((o) => o.length > 1));
    const shown = oneLine(`${dashes}${name}`);
    return guess
      ? `unknown option ${shown} for ${where}; did you mean --${name.startsWith('no-') && !guess.startsWith('no-') ? 'no-' : ''}${guess}?`
      : `unknown option ${shown} for ${where} (${where} --help lists its options)`;
  }
  return undefined;
}
