/** s3://BUCKET/PREFIX → an S3 target (loaded by src/storage/open.ts only for S3 repositories). */
import { makeS3Client, parseS3Url, resolveEndpoint, type S3Options } from './s3-config.js';
import { S3Target } from './s3-target.js';

export function openS3Target(url: string, s3: S3Options = {}): S3Target {
  const loc = parseS3Url(url);
  const endpoint = resolveEndpoint(s3);
  return new S3Target(makeS3Client(s3, endpoint), loc, {
    packStorageClass: s3.storageClass,
    concurrency: s3.concurrency,
    endpointLabel: endpoint.label,
  });
}
