/** The S3 options every command that takes --repo accepts. Credentials never come from flags. */
import type { Argv } from 'yargs';
import type { S3Options } from '../storage/s3/s3-config.js';
import { UsageError } from '../errors.js';

export interface S3Args {
  's3-endpoint'?: string;
  's3-path-style'?: boolean;
  's3-storage-class'?: string;
  's3-concurrency'?: number;
}

export const s3Options = <T>(y: Argv<T>) =>
  y
    .option('s3-endpoint', {
      type: 'string',
      describe: 'S3 endpoint URL for S3-compatible stores (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)',
    })
    .option('s3-path-style', { type: 'boolean', describe: 'address buckets as ENDPOINT/BUCKET (most S3-compatible stores)' })
    .option('s3-storage-class', { type: 'string', describe: 'storage class of pack objects, e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE' })
    .option('s3-concurrency', { type: 'number', describe: 'S3 requests in flight (default 4)' });

export function s3OptionsFrom(a: S3Args): S3Options {
  const c = a['s3-concurrency'];
  if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > 64)) {
    throw new UsageError(`--s3-concurrency must be a whole number from 1 to 64, not ${String(c)}`);
  }
  const cls = a['s3-storage-class'];
  if (cls !== undefined && !/^[A-Z_]+$/.test(cls)) {
    throw new UsageError(`--s3-storage-class ${JSON.stringify(cls)} is not a storage class name (e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE)`);
  }
  return { endpoint: a['s3-endpoint'], pathStyle: a['s3-path-style'], storageClass: cls, concurrency: c };
}
