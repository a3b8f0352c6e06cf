/**
 * `s3://BUCKET/PREFIX` and the S3 options → a configured client. Credentials and region come only
 * from the AWS SDK's default chain (environment, shared config/profiles via AWS_PROFILE, container
 * and instance roles); bkp never takes a secret on its command line.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { redactCredentials } from '../../shared/one-line.js';
import { UsageError } from '../../errors.js';

export interface S3Options {
  /** Endpoint URL; default $AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, else AWS itself. */
  endpoint?: string;
  /** Path-style addressing (ENDPOINT/BUCKET/KEY); default on for IP-address and localhost endpoints. */
  pathStyle?: boolean;
  /** Storage class of pack objects; everything else stays in the bucket's default (instant) class. */
  storageClass?: string;
  /** Requests in flight at most (uploads of parts, ranged reads). */
  concurrency?: number;
}

export interface S3Location {
  bucket: string;
  /** '' or a prefix ending with '/'. */
  prefix: string;
}

/** Parses s3://BUCKET[/PREFIX]; rejects what S3 would refuse, with the reason. */
export function parseS3Url(url: string): S3Location {
  // credentials come only from the environment or the AWS files: never from the URL, never echoed
  if (/^s3:\/\/[^/]*@/i.test(url)) {
    throw new UsageError(`S3 URL ${redactCredentials(url)} holds credentials (user:password@): give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, never in the URL`);
  }
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(url);
  if (!m) throw new UsageError(`${url} is not an S3 URL (expected s3://BUCKET/PREFIX)`);
  const bucket = m[1]!;
  if (!bucket) throw new UsageError(`S3 URL ${url} names no bucket (expected s3://BUCKET/PREFIX)`);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..') || isIP(bucket)) {
    throw new UsageError(`S3 bucket name ${JSON.stringify(bucket)} in ${url} is invalid (3 to 63 lowercase letters, digits, dots and hyphens)`);
  }
  let prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '') {
    if (prefix.split('/').some((p) => p === '' || p === '.' || p === '..')) {
      throw new UsageError(`S3 prefix ${JSON.stringify(m[2])} in ${url} has an empty, "." or ".." part`);
    }
    prefix += '/';
  }
  return { bucket, prefix };
}

export interface ResolvedEndpoint {
  url?: string;
  /** For messages: the URL, or "AWS S3 (region)". */
  label: string;
  pathStyle: boolean;
}

export function resolveEndpoint(opts: S3Options, env: NodeJS.ProcessEnv = process.env): ResolvedEndpoint {
  const url = opts.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (url === undefined || url === '') {
    return { label: `AWS S3${env.AWS_REGION ? ` (${env.AWS_REGION})` : ''}`, pathStyle: opts.pathStyle ?? false };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`S3 endpoint ${JSON.stringify(url)} is not a URL (expected e.g. https://s3.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`S3 endpoint ${url} must start with http:// or https://`);
  }
  if (u.username || u.password) throw new UsageError('S3 endpoint must not carry credentials; use the AWS credential chain (environment, AWS_PROFILE, roles)');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const pathStyle = opts.pathStyle ?? (isIP(host) !== 0 || host === 'localhost');
  return { url: u.origin + u.pathname.replace(/\/$/, ''), label: u.origin, pathStyle };
}

export function makeS3Client(opts: S3Options, endpoint: ResolvedEndpoint, env: NodeJS.ProcessEnv = process.env): S3Client {
  const concurrency = opts.concurrency ?? 4;
  // the SDK's own order (environment, then the profile's config), and for an S3-compatible
  // endpoint, where the region is often meaningless, us-east-1 when none is set
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? profileRegion(env) ?? (endpoint.url ? 'us-east-1' : undefined);
  const socketTimeout = positive(env.BKP_S3_SOCKET_TIMEOUT_MS, 60_000);
  return new S3Client({
    ...(region ? { region } : {}),
    ...(endpoint.url ? { endpoint: endpoint.url } : {}),
    forcePathStyle: endpoint.pathStyle,
    followRegionRedirects: true,
    // bkp sends Content-MD5 itself on every upload (checked by S3 and S3-compatible stores alike)
    // and checks its own CRC-32 and SHA-256 on every chunk it reads back.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // standard retries: exponential backoff with jitter on 5xx, throttling (SlowDown) and timeouts
    retryMode: 'standard',
    maxAttempts: positive(env.BKP_S3_MAX_ATTEMPTS, 6),
    requestHandler: {
      connectionTimeout: 10_000,
      socketTimeout,
      httpAgent: { keepAlive: true, maxSockets: concurrency + 4 },
      httpsAgent: { keepAlive: true, maxSockets: concurrency + 4 },
    },
  });
}

/** `region` of the active profile in the shared config file (~/.aws/config), if any. */
export function profileRegion(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const profile = env.AWS_PROFILE || 'default';
  let text: string;
  try {
    text = readFileSync(env.AWS_CONFIG_FILE || join(homedir(), '.aws', 'config'), 'utf8');
  } catch {
    return undefined;
  }
  let inProfile = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      inProfile = section[1] === profile;
      continue;
    }
    const kv = /^region\s*=\s*(\S+)$/.exec(line);
    if (inProfile && kv) return kv[1];
  }
  return undefined;
}

function positive(v: string | undefined, dflt: number): number {
  const n = Number(v);
  return v !== undefined && Number.isInteger(n) && n > 0 ? n : dflt;
}
