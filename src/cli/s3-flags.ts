/**
 * A job's `s3` section → the S3 flags --s3-endpoint, --s3-path-style, --s3-storage-class and
 * --s3-concurrency (src/cli/s3-options.ts). Flags given on the command line win.
 */
import type { JobConfig } from '../config/config.js';
import type { S3Args } from './s3-options.js';

export function s3ArgsFor(job: Pick<JobConfig, 's3'>, flags: S3Args): S3Args {
  const fromJob: S3Args = {
    's3-endpoint': job.s3?.endpoint,
    's3-path-style': job.s3?.pathStyle,
    's3-storage-class': job.s3?.storageClass,
    's3-concurrency': job.s3?.concurrency,
  };
  const out: S3Args = {};
  for (const k of Object.keys(fromJob) as Array<keyof S3Args>) {
    const v = flags[k] ?? fromJob[k];
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
