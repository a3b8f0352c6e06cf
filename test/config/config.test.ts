/** The configuration file: what is accepted, and every rejection naming the file, line and key. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, durationValue } from '../../src/config/config.js';
import { parseJsonWithLines, JsonSyntaxError } from '../../src/config/json-lines.js';
import { s3ArgsFor } from '../../src/cli/s3-flags.js';
import { ConfigInvalidError, ExitCode } from '../../src/errors.js';

const FILE = '/etc/bkp/config.json';

const GOOD = `{
  "jobs": {
    "db": {
      "repo": "s3://backups/db",
      "devices": ["/dev/sdb", "/dev/vg0/data"],
      "diffStorage": "/var/lib/bkp/diff-storage",
      "diffStorageLimit": "32G",
      "snapshot": true,
      "compressionLevel": 5,
      "fallback": false,
      "schedule": { "fullEvery": "7d" },
      "retention": { "keepLast": 3, "keepDaily": 7, "keepWeekly": 4, "keepMonthly": 12 },
      "s3": { "endpoint": "https://s3.example.net", "pathStyle": true, "storageClass": "STANDARD_IA", "concurrency": 4 },
      "metricsFile": "/var/lib/node_exporter/textfile/bkp-db.prom"
    },
    "root-disk": { "repo": "/srv/backup", "devices": ["/dev/sda"] }
  }
}
`;

/** Replaces one line of GOOD (1-based) and expects a ConfigInvalidError matching `words`. */
function rejects(text: string, words: RegExp): void {
  assert.throws(
    () => parseConfig(text, FILE),
    (e: unknown) => {
      assert.ok(e instanceof ConfigInvalidError, String(e));
      assert.equal(e.exitCode, ExitCode.CONFIG_INVALID);
      assert.match(e.message, words);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    },
  );
}

function withLine(n: number, replacement: string): string {
  const lines = GOOD.split('\n');
  lines[n - 1] = replacement;
  return lines.join('\n');
}

describe('configuration file', () => {
  test('a complete job and a minimal one', () => {
    const c = parseConfig(GOOD, FILE);
    assert.deepEqual([...c.jobs.keys()], ['db', 'root-disk']);
    const db = c.jobs.get('db')!;
    assert.deepEqual(db.devices, ['/dev/sdb', '/dev/vg0/data']);
    assert.equal(db.diffStorageLimit, 32 * 1024 ** 3);
    assert.equal(db.schedule.fullEvery, 7 * 86_400_000);
    assert.deepEqual(db.retention, { last: 3, hourly: undefined, daily: 7, weekly: 4, monthly: 12 });
    assert.deepEqual(db.s3, { endpoint: 'https://s3.example.net', pathStyle: true, storageClass: 'STANDARD_IA', concurrency: 4 });
    assert.equal(db.fallback, false);
    assert.equal(db.compressionLevel, 5);
    const root = c.jobs.get('root-disk')!;
    assert.deepEqual(root.schedule, {});
    assert.equal(root.retention, undefined);
    assert.equal(root.snapshot, undefined, 'defaults are applied by the run, so flags can tell what was set');
  });

  const cases: Array<[string, () => string, RegExp]> = [
    ['keepDaily negative', () => withLine(12, '      "retention": { "keepLast": 3, "keepDaily": -1 },'), /^config \/etc\/bkp\/config.json line 12: jobs\.db\.retention\.keepDaily must be a whole number >= 0$/],
    ['keepWeekly not whole', () => withLine(12, '      "retention": { "keepWeekly": 1.5 },'), /line 12: jobs\.db\.retention\.keepWeekly must be a whole number/],
    ['retention keeping nothing', () => withLine(12, '      "retention": { "keepLast": 0 },'), /line 12: jobs\.db\.retention keeps nothing/],
    ['unknown retention key', () => withLine(12, '      "retention": { "keepYearly": 3 },'), /line 12: jobs\.db\.retention\.keepYearly is not a known key \(known here: keepLast/],
    ['misspelt job key', () => withLine(9, '      "compresionLevel": 5,'), /line 9: jobs\.db\.compresionLevel is not a known key/],
    ['compression level out of range', () => withLine(9, '      "compressionLevel": 22,'), /line 9: jobs\.db\.compressionLevel must be a whole number from 1 to 19/],
    ['devices missing', () => withLine(5, ''), /line 3: jobs\.db needs "devices"/],
    ['devices empty', () => withLine(5, '      "devices": [],'), /line 5: jobs\.db\.devices must be a non-empty array/],
    ['relative device path', () => withLine(5, '      "devices": ["/dev/sdb", "sdc"],'), /line 5: jobs\.db\.devices\[1\] must be an absolute path/],
    ['device twice', () => withLine(5, '      "devices": ["/dev/sdb", "/dev/sdb"],'), /jobs\.db\.devices\[1\] names \/dev\/sdb a second time/],
    ['size not a size', () => withLine(7, '      "diffStorageLimit": "lots",'), /line 7: jobs\.db\.diffStorageLimit must be a size/],
    ['schedule duration', () => withLine(11, '      "schedule": { "fullEvery": "weekly" },'), /line 11: jobs\.db\.schedule\.fullEvery must be a duration/],
    ['snapshot not boolean', () => withLine(8, '      "snapshot": "yes",'), /line 8: jobs\.db\.snapshot must be true or false/],
    ['s3 concurrency', () => withLine(13, '      "s3": { "concurrency": 0 },'), /line 13: jobs\.db\.s3\.concurrency must be a whole number from 1 to 64/],
    ['s3 endpoint', () => withLine(13, '      "s3": { "endpoint": "s3.example.net" },'), /line 13: jobs\.db\.s3\.endpoint must be a URL/],
    ['s3 with a local repository', () => withLine(4, '      "repo": "/srv/backup",'), /line 13: jobs\.db\.s3 is given but repo \/srv\/backup is not an s3:\/\/ repository/],
    ['metrics file relative', () => withLine(14, '      "metricsFile": "bkp.prom"'), /line 14: jobs\.db\.metricsFile must be an absolute path/],
    ['bad job name', () => withLine(16, '    "root disk": { "repo": "/srv/backup", "devices": ["/dev/sda"] }'), /line 16: jobs\.root disk is not a valid job name/],
    ['job not an object', () => withLine(16, '    "root-disk": ["/dev/sda"]'), /line 16: jobs\.root-disk must be an object/],
    ['unknown top-level key', () => `{ "jobs": {},\n  "job": {} }`, /line 2: job is not a known key/],
    ['no jobs', () => '{}', /line 1: the file has no "jobs" object/],
    ['trailing comma (syntax)', () => withLine(14, '      "metricsFile": "/x.prom",'), /^config \/etc\/bkp\/config.json line 15 column 5: trailing comma before \}$/],
    ['missing comma (syntax)', () => withLine(5, '      "devices": ["/dev/sdb" "/dev/sdc"],'), /line 5 column 30: expected ',' or '\]' after element 0 of jobs\.db\.devices/],
    ['duplicate key', () => withLine(9, '      "snapshot": false,'), /line 9 column \d+: jobs\.db\.snapshot is given twice \(first on line 8\)/],
    ['comment', () => withLine(9, '      // level 5'), /line 9 column 7: comments are not allowed/],
    ['single quotes', () => withLine(4, "      'repo': '/srv'"), /line 4 column 7: expected a key in double quotes/],
    ['unterminated string', () => withLine(4, '      "repo": "/srv,'), /line 4 column 15: unterminated string/],
    ['truncated file', () => GOOD.slice(0, 200), /unexpected end of file|unterminated/],
    ['empty file', () => '', /line 1 column 1: unexpected end of file where a value should be/],
  ];
  for (const [name, text, words] of cases) test(`rejected: ${name}`, () => rejects(text(), words));

  test('durations', () => {
    assert.equal(durationValue('7d'), 7 * 86_400_000);
    assert.equal(durationValue('2w'), 14 * 86_400_000);
    assert.equal(durationValue('36h'), 36 * 3_600_000);
    assert.equal(durationValue('90m'), 90 * 60_000);
    for (const bad of ['0d', '7', 'd', '1.5d', '7 days', '-1d']) assert.equal(durationValue(bad), undefined, bad);
  });

  test('the JSON parser agrees with JSON.parse on values', () => {
    const docs = [GOOD, '[1, -2.5e3, true, false, null, "a\\"b\\u00e9\\n", {}, []]', '"\\/"', '  0  '];
    for (const d of docs) assert.deepEqual(JSON.parse(JSON.stringify(parseJsonWithLines(d).value)), JSON.parse(d));
    for (const bad of ['01', '[1,]', '{"a":1,}', 'tru', '1 2', '"\t"', '{"a" 1}', '-', '.5']) {
      assert.throws(() => JSON.parse(bad));
      assert.throws(() => parseJsonWithLines(bad), JsonSyntaxError, bad);
    }
  });

  test('lines of keys and array elements', () => {
    const p = parseJsonWithLines('{\n "a": {\n  "b": [\n   1,\n\n   2\n  ]\n }\n}');
    assert.equal(p.lineOf('a'), 2);
    assert.equal(p.lineOf('a.b'), 3);
    assert.equal(p.lineOf('a.b[0]'), 4);
    assert.equal(p.lineOf('a.b[1]'), 6);
  });

  test('S3 section → the --s3-* flags, flags win', () => {
    const job = parseConfig(GOOD, FILE).jobs.get('db')!;
    assert.deepEqual(s3ArgsFor(job, {}), { 's3-endpoint': 'https://s3.example.net', 's3-path-style': true, 's3-storage-class': 'STANDARD_IA', 's3-concurrency': 4 });
    assert.deepEqual(s3ArgsFor(job, { 's3-storage-class': 'STANDARD', 's3-path-style': false }), {
      's3-endpoint': 'https://s3.example.net',
      's3-path-style': false,
      's3-storage-class': 'STANDARD',
      's3-concurrency': 4,
    });
    assert.deepEqual(s3ArgsFor({ s3: undefined }, {}), {});
  });
});
