#!/usr/bin/env node
// Puts `bkp` on PATH: a symbolic link to this checkout's bin/bkp.js in /usr/local/bin (as root)
// or ~/.local/bin (as another user), or in the directory given with --dir. `npm run demo` runs it
// first, so the README's first command leaves `bkp` installed. It never replaces a `bkp` that is
// not such a link (another installation): it says so and leaves it.
import { lstatSync, mkdirSync, readlinkSync, symlinkSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const target = join(root, 'bin', 'bkp.js');
const at = process.argv.indexOf('--dir');
const dir = at >= 0 ? resolve(process.argv[at + 1] ?? '.') : process.getuid?.() === 0 ? '/usr/local/bin' : join(homedir(), '.local', 'bin');
const link = join(dir, 'bkp');

function existing() {
  try {
    const st = lstatSync(link);
    return st.isSymbolicLink() ? { link: readlinkSync(link) } : { file: true };
  } catch {
    return null;
  }
}

const found = existing();
if (found?.file || (found?.link && !found.link.endsWith(join('bin', 'bkp.js')))) {
  console.error(`install-bin: ${link} exists and is not a link to a bkp checkout; left as it is (remove it to install this one)`);
  process.exit(1);
}
mkdirSync(dir, { recursive: true });
if (found?.link !== target) {
  // atomically: a link under a temporary name, renamed over the old one
  const tmp = `${link}.${process.pid}.tmp`;
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}
const onPath = (process.env.PATH ?? '').split(delimiter).some((p) => resolve(p) === dir);
console.log(`bkp installed: ${link} -> ${target}${onPath ? '' : ` (${dir} is not on your PATH: add it, or run ${link})`}`);
