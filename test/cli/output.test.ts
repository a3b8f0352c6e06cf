/**
 * What bkp prints: --json of every command matches its schema in docs/schema/ (errors too);
 * without a TTY there is not one escape code; --quiet prints nothing on success; on a TTY
 * (script(1)) progress bars appear; --version; shell completion.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fs, readdirSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { BKP, ROOT, runBkp, tempDir } from '../support/env.js';
import { makeImage, scribble } from '../support/data.js';
import { blksnapHarness, type BlksnapHarness } from '../support/blksnap-fake.js';
import { assertMatchesSchema, loadSchema, validate, SCHEMA_DIR } from '../support/json-schema.js';
import { ExitCode } from '../../src/errors.js';

const MiB = 1024 * 1024;
const ESC = '\x1b';

describe('output', () => {
  const t = tempDir('bkp-output-');
  const repo = path.join(t.dir, 'repo');
  const img = path.join(t.dir, 'disk.img');
  const config = path.join(t.dir, 'config.json');
  let h: BlksnapHarness;
  const json = async (args: string[], schema: string, env: NodeJS.ProcessEnv = {}, code = 0) => {
    const r = await runBkp([...args, '--json'], { env });
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    const v = JSON.parse(r.stdout) as Record<string, unknown>;
    assertMatchesSchema(v, schema);
    return v;
  };
  const noEsc = async (args: string[]) => {
    const r = await runBkp(args);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(ESC) && !r.stderr.includes(ESC), `escape code in the output of ${args[0]}`);
    assert.ok(r.stderr.split('\n').length < 12, `a few lines per phase, not a stream of progress: ${r.stderr}`);
    return r;
  };

  before(async () => {
    await makeImage(img, 8 * MiB, 'output');
    await fs.writeFile(config, JSON.stringify({ jobs: { img: { repo, devices: [img], snapshot: false, retention: { keepLast: 5 }, schedule: { fullEvery: '1d' } } } }));
    h = await blksnapHarness('fake');
  });
  after(async () => {
    await h.cleanup();
    t.cleanup();
  });

  test('every schema is well-formed and uses only what the validator checks', () => {
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.schema.json'));
    assert.ok(files.length >= 12);
    for (const f of files) validate({}, loadSchema(f), f); // throws on an unsupported keyword
    assert.throws(() => assertMatchesSchema({ command: 'list', backups: [{ backupId: 1 }] }, 'list.schema.json'), /does not match/, 'the validator can fail');
  });

  test('--json of every command matches its schema', async () => {
    await json(['init', '--repo', repo, '--chunk-size', '256K'], 'init.schema.json');
    await json(['full', '--repo', repo, '--device', img, '--no-snapshot'], 'backup.schema.json');
    await scribble(img, 8 * MiB, 3, 'o1');
    const incr = await json(['incr', '--repo', repo, '--device', img, '--no-snapshot'], 'backup.schema.json');
    assert.equal((incr.devices as Array<{ method: { mode: string } }>)[0]!.method.mode, 'digest');
    await json(['run', 'img', '--config', config], 'run.schema.json');
    await json(['list', '--repo', repo], 'list.schema.json');
    await json(['restore', '--repo', repo, '--to', path.join(t.dir, 'r.img')], 'restore.schema.json');
    await json(['verify', '--repo', repo, '--read-data'], 'verify.schema.json');
    await json(['prune', '--repo', repo, '--keep-last', '2', '--dry-run'], 'prune.schema.json');
    await json(['gc', '--repo', repo], 'gc.schema.json');
    await json(['config', 'check', '--config', config], 'config-check.schema.json');
    await json(['status'], 'status.schema.json', { BKP_BLKSNAP_FAKE: h.fakeDir });
    await json(['snapshot', 'cleanup', '--diff-storage', t.dir], 'snapshot-cleanup.schema.json', { BKP_BLKSNAP_FAKE: h.fakeDir });
    // a partial failure is still a backup summary; a failure is an error object
    const e = await json(['list', '--repo', path.join(t.dir, 'nothing')], 'error.schema.json', {}, ExitCode.REPO_MISSING);
    assert.equal((e.error as { exitCode: number }).exitCode, ExitCode.REPO_MISSING);
    await json(['run', 'nope', '--config', config], 'error.schema.json', {}, ExitCode.CONFIG_INVALID);
  });

  test('without a TTY: no escape codes in full, incr, run, restore, verify', async () => {
    const r = await noEsc(['full', '--repo', repo, '--device', img, '--no-snapshot']);
    assert.match(r.stderr, /^full .*disk\.img: 8\.00 MiB$/m, 'a line when the phase starts');
    assert.match(r.stderr, /^full .*disk\.img: done in /m, 'and one when it ends');
    assert.match(r.stdout, /^full backup \S+ \(no snapshot\)$/m, 'a final summary');
    await noEsc(['incr', '--repo', repo, '--device', img, '--no-snapshot']);
    await noEsc(['run', 'img', '--config', config]);
    await noEsc(['restore', '--repo', repo, '--to', path.join(t.dir, 'r2.img')]);
    await noEsc(['verify', '--repo', repo, '--read-data']);
  });

  test('--quiet: nothing at all on success, the error line on failure', async () => {
    for (const args of [['incr', '--repo', repo, '--device', img, '--no-snapshot'], ['run', 'img', '--config', config]]) {
      const r = await runBkp([...args, '--quiet']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout + r.stderr, '', `${args[0]} --quiet printed something`);
    }
    const bad = await runBkp(['incr', '--repo', repo, '--device', path.join(t.dir, 'nope'), '--no-snapshot', '-q']);
    assert.equal(bad.code, ExitCode.DEVICE_MISSING);
    assert.equal(bad.stdout, '');
    assert.match(bad.stderr, /^bkp: device .*nope does not exist\n$/);
  });

  test('on a TTY (script -qec): a progress bar', async () => {
    const cmd = `${process.execPath} ${BKP} verify --repo ${repo} --read-data`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, TERM: 'xterm' }, timeout: 60_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    assert.ok(out.includes(ESC), 'escape codes on a terminal');
    assert.match(out, /verify data \[[\u2588\u2591]+\] \d+%/, 'a cli-progress bar');
  });

  test('--version and shell completion', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await runBkp(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), pkg.version);
    const script = await runBkp(['completion']);
    assert.equal(script.code, 0, script.stderr);
    assert.match(script.stdout, /complete -o bashdefault -o default -F _bkp_yargs_completions bkp/);
    const cmds = await runBkp(['--get-yargs-completions', '']);
    for (const c of ['full', 'incr', 'run', 'restore', 'completion']) assert.ok(cmds.stdout.split('\n').includes(c), c);
    const jobs = await runBkp(['--get-yargs-completions', 'run', ''], { env: { BKP_CONFIG: config } });
    assert.deepEqual(jobs.stdout.trim().split('\n'), ['img'], 'job names after bkp run');
  });

  test('bkp completion --help prints help, not the script', async () => {
    const r = await runBkp(['completion', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^bkp completion\n/);
    assert.match(r.stdout, /print a bash\/zsh completion script/);
    assert.doesNotMatch(r.stdout, /_bkp_yargs_completions/);
  });

  test('the installed bash completion script completes job names from the configuration file', async () => {
    // as installed: the script from `bkp completion`, sourced by bash, calling the `bkp` on PATH
    const script = path.join(t.dir, 'bkp-completion.bash');
    await fs.writeFile(script, (await runBkp(['completion'])).stdout);
    const bin = path.join(t.dir, 'bin');
    await fs.mkdir(bin, { recursive: true });
    await fs.writeFile(path.join(bin, 'bkp'), `#!/bin/sh\nexec '${process.execPath}' '${BKP}' "$@"\n`, { mode: 0o755 });
    const complete = (words: string[]) =>
      new Promise<string[]>((resolve, reject) => {
        const cmd = `source '${script}'; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _bkp_yargs_completions; printf '%s\\n' "\${COMPREPLY[@]}"`;
        execFile('bash', ['-c', cmd], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, BKP_CONFIG: config }, timeout: 60_000 }, (err, stdout, stderr) =>
          err ? reject(err) : (assert.equal(stderr, ''), resolve(stdout.split('\n').filter((l) => l !== ''))),
        );
      });
    assert.deepEqual(await complete(['bkp', 'run', '']), ['img'], 'job names after bkp run');
    assert.deepEqual(await complete(['bkp', 'run', 'i']), ['img'], 'job names that start with the word typed');
    assert.deepEqual(await complete(['bkp', 'snapshot', '']), ['cleanup'], 'the subcommands of a group');
    assert.ok((await complete(['bkp', 'ver'])).includes('verify'), 'commands');
  });
});
