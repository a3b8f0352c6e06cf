/** `--repo` → a storage target. A local path, or (later) s3://BUCKET/PREFIX. */
import { promises as fs } from 'node:fs';
import { LocalTarget } from './local/local-target.js';
import type { Target } from './target.js';
import { NotADeviceError, UsageError } from '../errors.js';

export async function openTarget(repo: string | undefined): Promise<Target> {
  if (!repo) throw new UsageError('no repository: pass --repo DIR or set BKP_REPO');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) {
    throw new UsageError(`repository URL scheme of ${repo} is not supported by this version (use a local directory)`);
  }
  const st = await fs.stat(repo).catch(() => null);
  if (st && !st.isDirectory()) throw new NotADeviceError(`repository path ${repo} is not a directory`);
  return new LocalTarget(repo);
}
