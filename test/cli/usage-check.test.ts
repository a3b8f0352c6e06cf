/** The words of a usage error (src/cli/usage-check.ts, src/cli/suggest.ts) and one-line messages (src/report/one-line.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { usageProblem, typedOptions, type UsageContext } from '../../src/cli/usage-check.js';
import { closest, editDistance } from '../../src/cli/suggest.js';
import { oneLine, redactCredentials } from '../../src/shared/one-line.js';

const top: Omit<UsageContext, 'words' | 'raw'> = { path: [], subcommands: ['init', 'full', 'list', 'ls', 'snapshot'], shown: ['init', 'full', 'list', 'snapshot'], options: ['help', 'version', 'json', 'quiet', 'q'] };
const full: Omit<UsageContext, 'words' | 'raw'> = { path: ['full'], subcommands: [], shown: [], options: ['help', 'json', 'repo', 'device', 'snapshot', 'diff-storage', 'diff-storage-limit'] };

test('closest: typos within two edits (a swap is one), or a unique prefix', () => {
  assert.equal(editDistance('devcie', 'device'), 1);
  assert.equal(closest('ful', ['full', 'incr']), 'full');
  assert.equal(closest('devcie', ['device', 'repo']), 'device');
  assert.equal(closest('diff-storage-lim', ['diff-storage', 'diff-storage-limit']), 'diff-storage-limit');
  assert.equal(closest('comp', ['compression-level', 'repo']), 'compression-level', 'a unique prefix');
  assert.equal(closest('diff-stor', ['diff-storage', 'diff-storage-limit']), undefined, 'a prefix of two');
  assert.equal(closest('xyz', ['full', 'incr']), undefined);
  assert.equal(closest('a', ['ab', 'ac']), undefined);
});

test('typed options: long, negated, with =, short clusters; not negative numbers, not after --', () => {
  assert.deepEqual(typedOptions(['full', '--repo', 'x', '--no-snapshot', '--chunk-size=1M', '-qh', '--level', '-3', '--', '--after']), ['repo', 'no-snapshot', 'chunk-size', 'q', 'h', 'level']);
});

test('unknown commands and subcommands, with the closest one or the list', () => {
  assert.equal(usageProblem({ ...top, words: ['ful'], raw: ['ful'] }), 'unknown command: ful; did you mean full?');
  assert.equal(usageProblem({ ...top, words: ['zap'], raw: ['zap'] }), 'unknown command: zap (commands: init, full, list, snapshot)');
  assert.equal(usageProblem({ ...top, words: ['ls'], raw: ['ls'] }), undefined, 'an alias is a command');
  assert.equal(usageProblem({ ...top, words: [], raw: [] }), 'name a command (bkp --help lists them)');
  const snap = { path: ['snapshot'], subcommands: ['cleanup'], shown: ['cleanup'], options: ['help'] };
  assert.equal(usageProblem({ ...snap, words: ['snapshot', 'list'], raw: ['snapshot', 'list'] }), 'unknown subcommand: snapshot list (bkp snapshot takes: cleanup)');
  assert.equal(usageProblem({ ...snap, words: ['snapshot', 'clenup'], raw: ['snapshot', 'clenup'] }), 'unknown subcommand: snapshot clenup; did you mean snapshot cleanup?');
  assert.equal(usageProblem({ ...snap, words: ['snapshot'], raw: ['snapshot'] }), 'bkp snapshot needs a subcommand: cleanup');
});

test('unknown options: named for the command, with the closest known one', () => {
  const raw = ['full', '--repo', 'r', '--devcie', 'd'];
  assert.equal(usageProblem({ ...full, words: ['full'], raw }), 'unknown option --devcie for bkp full; did you mean --device?');
  assert.equal(usageProblem({ ...full, words: ['full'], raw: ['full', '--no-snapshto'] }), 'unknown option --no-snapshto for bkp full; did you mean --no-snapshot?');
  assert.equal(usageProblem({ ...full, words: ['full'], raw: ['full', '--colour'] }), 'unknown option --colour for bkp full (bkp full --help lists its options)');
  assert.equal(usageProblem({ ...full, words: ['full'], raw: ['full', '--no-snapshot', '--diffStorage', 'x', '--device=/dev/sda'] }), undefined, 'negated, camelCase and = forms are known');
});

test('a control character in any argument is refused, shown escaped', () => {
  assert.equal(
    usageProblem({ ...full, words: ['full'], raw: ['full', '--device', '/dev/sda\n1'] }),
    'argument "/dev/sda\\n1" holds a control character (a newline, tab or escape); bkp refuses paths and names that hold one',
  );
});

test('one line, no secret', () => {
  assert.equal(oneLine('device /a\nb\x1b[2J\tc'), 'device /a\\nb\\x1b[2J\\tc');
  assert.equal(redactCredentials('S3 URL s3://AK:secret@bucket/x and "https://u:p@h"'), 'S3 URL s3://***@bucket/x and "https://***@h"');
  assert.equal(redactCredentials('s3://bucket/x has no user'), 's3://bucket/x has no user');
});
