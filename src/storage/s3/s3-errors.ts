/** S3 SDK failures → bkp's typed errors, naming the bucket and endpoint, never a credential. */
import {
  BkpError,
  BucketMissingError,
  ConfigInvalidError,
  ExitCode,
  ObjectArchivedError,
  StorageDeniedError,
  StorageUnreachableError,
} from '../../errors.js';

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
}

const DENIED = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AllAccessDisabled',
  'AccountProblem',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
]);

const NETWORK = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED']);

export interface S3ErrorContext {
  bucket: string;
  url: string;
  endpoint: string;
}

/** The S3 error code of an SDK error (`NoSuchKey`, `PreconditionFailed`, …), or undefined. */
export function s3Code(e: unknown): string | undefined {
  const err = e as SdkError;
  if (err?.Code) return err.Code;
  // network failures come as plain Errors whose code is the errno name (ENOTFOUND, ECONNREFUSED)
  if (typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code)) return err.code;
  return err?.name && err.name !== 'Error' ? err.name : err?.code;
}

export function httpStatus(e: unknown): number | undefined {
  return (e as SdkError)?.$metadata?.httpStatusCode;
}

/** Removes anything that looks like a credential from a message. */
export function redact(msg: string): string {
  return msg
    .replace(/(Credential=)[^,\s]+/g, '$1[redacted]')
    .replace(/(Signature=)[0-9a-f]+/gi, '$1[redacted]')
    .replace(/(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s]+/gi, '$1[redacted]')
    .replace(/\b(AKIA|ASIA)[A-Z0-9]{12,}\b/g, '[redacted key id]');
}

export function mapS3Error(e: unknown, ctx: S3ErrorContext, key?: string): unknown {
  if (e instanceof BkpError) return e;
  const err = e as SdkError;
  const code = s3Code(e) ?? '';
  const status = httpStatus(e);
  const message = err?.message && err.message !== 'UnknownError' ? err.message : '';
  const detail = redact(message || code).split('\n')[0]!.slice(0, 200);
  const where = `${ctx.url} at ${ctx.endpoint}`;
  if (code === 'NoSuchBucket') {
    return new BucketMissingError(`S3 bucket ${ctx.bucket} does not exist at ${ctx.endpoint} (create it first; bkp does not create buckets)`, { cause: e });
  }
  if (code === 'InvalidObjectState' || code === 'ObjectNotInActiveTierError') {
    return new ObjectArchivedError(
      `S3 object ${key ?? ''} in ${ctx.url} is in an archive storage class and must be restored before it can be read (see docs/operations.md, "Cold storage classes")`,
      { cause: e },
    );
  }
  if (code === 'CredentialsProviderError' || /Could not load credentials/i.test(detail)) {
    return new StorageDeniedError(
      `no S3 credentials for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or container role`,
      { cause: e },
    );
  }
  if (/Region is missing/i.test(detail)) {
    return new ConfigInvalidError(`no AWS region for ${ctx.url}: set AWS_REGION or a region in your AWS profile`, { cause: e });
  }
  if (code === 'RequestTimeTooSkewed') {
    return new StorageDeniedError(`${ctx.endpoint} refused the request because this machine's clock is off by too much: fix the time (NTP)`, { cause: e });
  }
  if (DENIED.has(code) || status === 403) {
    return new StorageDeniedError(`access to ${where} denied (${code || status}): check the credentials and the bucket policy`, { cause: e });
  }
  if (NETWORK.has(code) || code === 'TimeoutError' || code === 'RequestTimeout' || /socket hang up|timed out|ECONNREFUSED|ENOTFOUND|EAI_AGAIN/i.test(detail)) {
    return new StorageUnreachableError(`cannot reach S3 endpoint ${ctx.endpoint} for bucket ${ctx.bucket} (${code || detail})`, { cause: e });
  }
  if (status === 404 && (code === 'UnknownError' || code === 'NotFound' || code === '')) {
    return new StorageUnreachableError(`${ctx.endpoint} answered HTTP ${status ?? '?'} without an S3 error for ${key ?? ctx.url}: is it an S3 endpoint?`, { cause: e });
  }
  if (code === 'NotImplemented' || status === 501) {
    return new ConfigInvalidError(`${ctx.endpoint} does not implement a request bkp needs (${key ?? ctx.url}); bkp needs conditional puts (If-None-Match), ranged reads and multipart uploads`, { cause: e });
  }
  if ((status ?? 0) >= 500 || code === 'SlowDown' || code === 'ServiceUnavailable' || code === 'InternalError') {
    return new StorageUnreachableError(`S3 at ${ctx.endpoint} kept failing for ${ctx.url}${key ? ` (${key})` : ''}: ${code || status} after retries`, {
      cause: e,
    });
  }
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || status === 301) {
    return new ConfigInvalidError(`S3 bucket ${ctx.bucket} is in another region than the one configured: set AWS_REGION (${code || status})`, { cause: e });
  }
  return new BkpError(`S3 request for ${key ?? ctx.url} at ${ctx.endpoint} failed: ${[code, status && `HTTP ${status}`, detail !== code && detail].filter(Boolean).join(', ')}`, ExitCode.STORAGE_UNREACHABLE, {
    cause: e,
  });
}
