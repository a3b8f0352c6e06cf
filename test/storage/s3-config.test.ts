/** Pure parts of the S3 set-up: URLs, endpoints, the profile's region. No server needed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseS3Url, profileRegion, resolveEndpoint } from '../../src/storage/s3/s3-config.js';
import { ExitCode, type BkpError } from '../../src/errors.js';

test('s3 URLs: bucket and prefix, and what S3 would refuse', () => {
  assert.deepEqual(parseS3Url('s3://my-bucket'), { bucket: 'my-bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://my-bucket/'), { bucket: 'my-bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://my.bucket/a/b/'), { bucket: 'my.bucket', prefix: 'a/b/' });
  for (const bad of ['s3://', 's3:///x', 's3://ab/x', 's3://Upper/x', 's3://a..b/x', 's3://192.168.1.1/x', 's3://b-k-t/a//b', 's3://b-k-t/a/../b']) {
    assert.throws(() => parseS3Url(bad), (e: BkpError) => e.exitCode === ExitCode.USAGE, bad);
  }
});

test('endpoints: environment order, path style for IP addresses, no credentials in the URL', () => {
  assert.equal(resolveEndpoint({}, { AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2' }).url, 'http://b:2');
  assert.equal(resolveEndpoint({ endpoint: 'https://c' }, { AWS_ENDPOINT_URL_S3: 'http://b:2' }).url, 'https://c');
  assert.equal(resolveEndpoint({}, { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' }).pathStyle, true);
  assert.equal(resolveEndpoint({}, { AWS_ENDPOINT_URL: 'https://s3.example.com' }).pathStyle, false);
  assert.equal(resolveEndpoint({}, {}).url, undefined);
  assert.throws(() => resolveEndpoint({ endpoint: 'https://key:secret@s3.example.com' }, {}), (e: BkpError) => e.exitCode === ExitCode.USAGE && !e.message.includes('secret'));
  assert.throws(() => resolveEndpoint({ endpoint: 'ftp://x' }, {}), (e: BkpError) => e.exitCode === ExitCode.USAGE);
});

test("the region of the active profile comes from the shared config file", () => {
  const dir = mkdtempSync(join(tmpdir(), 'bkp-awsconf-'));
  const file = join(dir, 'config');
  writeFileSync(file, '[default]\nregion = eu-west-1\n\n[profile backup]\n# a comment\nregion = eu-central-1 ; trailing\n[profile other]\noutput = json\n');
  try {
    assert.equal(profileRegion({ AWS_CONFIG_FILE: file }), 'eu-west-1');
    assert.equal(profileRegion({ AWS_CONFIG_FILE: file, AWS_PROFILE: 'backup' }), 'eu-central-1');
    assert.equal(profileRegion({ AWS_CONFIG_FILE: file, AWS_PROFILE: 'other' }), undefined);
    assert.equal(profileRegion({ AWS_CONFIG_FILE: join(dir, 'none') }), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
