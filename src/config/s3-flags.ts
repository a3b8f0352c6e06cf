/**
 * MERGE ADAPTER (S3 options): a job's `s3` section → the global flags --s3-endpoint,
 * --s3-path-style, --s3-storage-class and --s3-concurrency (src/cli/s3-options.ts, on the S3
 * branch). Flags given on the command line win. On the merge, `bkp run` passes the result on:
 *   openTarget(repo, s3OptionsFrom(s3ArgsFor(job, argv)))
 */
import type { JobConfig } from './config.js';

export interface S3Args {
  's3-endpoint'?: string;
  's3-path-style'?: boolean;
  's3-storage-class'?: string;
  's3-concurrency'?: number;
}

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
