/** `--repo` → a storage target: a local directory, or s3://BUCKET/PREFIX. */
import { promises as fs } from 'node:fs';
import { LocalTarget } from './local/local-target.js';
import type { Target } from './target.js';
import type { S3Options } from './s3/s3-config.js';
import { NotADeviceError, UsageError } from '../errors.js';
import { hasControlCharacter } from '../shared/one-line.js';

export function isS3Url(repo: string): boolean {
  return /^s3:\/\//i.test(repo);
}

export async function openTarget(repo: string | undefined, s3: S3Options = {}): Promise<Target> {
  if (!repo) throw new UsageError('no repository: pass --repo DIR or --repo s3://BUCKET/PREFIX, or set BKP_REPO');
  // from BKP_REPO or a job's repo as well as --repo: never a control character in a message
  if (hasControlCharacter(repo)) throw new UsageError(`repository ${JSON.stringify(repo)} holds a control character (a newline, tab or escape)`);
  // the AWS SDK takes ~0.2 s to load: only commands on an S3 repository pay for it
  if (isS3Url(repo)) return (await import('./s3/open-s3.js')).openS3Target(repo, s3);
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
