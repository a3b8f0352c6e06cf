/** `--repo` → a storage target: a local directory, or s3://BUCKET/PREFIX. */
import { promises as fs } from 'node:fs';
import { LocalTarget } from './local/local-target.js';
import type { Target } from './target.js';
import { isS3Url, makeS3Client, parseS3Url, resolveEndpoint, type S3Options } from './s3/s3-config.js';
import { S3Target } from './s3/s3-target.js';
import { NotADeviceError, UsageError } from '../errors.js';

export async function openTarget(repo: string | undefined, s3: S3Options = {}): Promise<Target> {
  if (!repo) throw new UsageError('no repository: pass --repo DIR or --repo s3://BUCKET/PREFIX, or set BKP_REPO');
  if (isS3Url(repo)) return openS3Target(repo, s3);
  const given = Object.entries({ endpoint: '--s3-endpoint', pathStyle: '--s3-path-style', storageClass: '--s3-storage-class', concurrency: '--s3-concurrency' })
    .filter(([k]) => s3[k as keyof S3Options] !== undefined)
    .map(([, flag]) => flag);
  if (given.length) throw new UsageError(`${given.join(', ')} apply only to s3:// repositories, and ${repo} is not one`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) {
    throw new UsageError(`repository URL ${repo} has an unsupported scheme (use a local directory or s3://BUCKET/PREFIX)`);
  }
  const st = await fs.stat(repo).catch(() => null);
  if (st && !st.isDirectory()) throw new NotADeviceError(`repository path ${repo} is not a directory`);
  return new LocalTarget(repo);
}

export function openS3Target(url: string, s3: S3Options = {}): S3Target {
  const loc = parseS3Url(url);
  const endpoint = resolveEndpoint(s3);
  return new S3Target(makeS3Client(s3, endpoint), loc, {
    packStorageClass: s3.storageClass,
    concurrency: s3.concurrency,
    endpointLabel: endpoint.label,
  });
}
