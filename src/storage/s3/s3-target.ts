/**
 * A repository in an S3 bucket (AWS or any S3-compatible store).
 *
 * - put: one PutObject up to `multipartThreshold`, else a multipart upload whose parts go out in
 *   parallel (bounded by `concurrency`); every upload carries Content-MD5, which S3 checks. A put
 *   given an abort signal stops when it fires: requests in flight are aborted, a multipart upload
 *   is aborted on the S3 side. A
 *   create-only put (`ifAbsent`) is a single PutObject with `If-None-Match: *`, so that of two
 *   writers exactly one wins.
 * - get: GetObject with a byte range; a body that arrives short, stalls past the socket timeout or
 *   breaks off is read again (READ_ATTEMPTS in all; the SDK retries the request itself).
 * - Pack objects (keys under packs/) get the configured storage class; indexes, config and locks
 *   stay in the bucket's default class so that listing and planning never wait for a thaw.
 * - Requests are counted (and logged to $BKP_S3_REQUEST_LOG when set) so tests can hold bkp to its
 *   request budget.
 */
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import pLimit from 'p-limit';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { checkKey, checkPrefix, ObjectExistsError, ObjectMissingError, type ByteRange, type ObjectInfo, type PutOptions, type Target } from '../target.js';
import { ConfigInvalidError, StorageUnreachableError } from '../../errors.js';
import { httpStatus, mapS3Error, s3Code, type S3ErrorContext } from './s3-errors.js';
import type { S3Location } from './s3-config.js';

export interface S3TargetOptions {
  /** Storage class for objects under packs/. */
  packStorageClass?: string;
  concurrency?: number;
  /** Objects larger than this go up as multipart uploads. */
  multipartThreshold?: number;
  /** Part size of multipart uploads (S3: at least 5 MiB; at most 10,000 parts). */
  partSize?: number;
  endpointLabel: string;
}

export interface S3ObjectInfo extends ObjectInfo {
  storageClass?: string;
}

const MiB = 1024 * 1024;
const READ_ATTEMPTS = 3;
/** The keys of a bkp repository (docs/format.md section 2). */
const BKP_KEY = /^(config|packs\/[0-9a-f]{2}\/[0-9a-f]{32}\.pack|backups\/[^/]+\/[^/]+\.idx|locks\/\d{12})$/;

export class S3Target implements Target {
  readonly location: string;
  /** HTTP requests sent, retries included, by operation name. */
  readonly requests = new Map<string, number>();
  private readonly limit;
  private readonly ctx: S3ErrorContext;
  private readonly multipartThreshold: number;
  private readonly partSize: number;

  constructor(
    private readonly client: S3Client,
    private readonly loc: S3Location,
    private readonly opts: S3TargetOptions,
  ) {
    this.location = `s3://${loc.bucket}${loc.prefix ? `/${loc.prefix.replace(/\/$/, '')}` : ''}`;
    this.ctx = { bucket: loc.bucket, url: this.location, endpoint: opts.endpointLabel };
    this.limit = pLimit(opts.concurrency ?? 4);
    this.multipartThreshold = opts.multipartThreshold ?? 64 * MiB;
    this.partSize = Math.max(5 * MiB, opts.partSize ?? 16 * MiB);
    const log = process.env.BKP_S3_REQUEST_LOG;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const op = String((context as { commandName?: string }).commandName ?? 'unknown').replace(/Command$/, '');
        this.requests.set(op, (this.requests.get(op) ?? 0) + 1);
        if (log) {
          const input = args.input as { Key?: string; Prefix?: string };
          appendFileSync(log, `${op} ${input.Key ?? input.Prefix ?? ''}\n`);
        }
        return next(args);
      },
      // deserialize runs once per attempt (retries happen in finalizeRequest, before it)
      { step: 'deserialize', name: 'bkpRequestCounter', priority: 'low' },
    );
  }

  get requestCount(): number {
    let n = 0;
    for (const v of this.requests.values()) n += v;
    return n;
  }

  private key(key: string): string {
    checkKey(key);
    return this.loc.prefix + key;
  }

  private classFor(key: string): StorageClass | undefined {
    return key.startsWith('packs/') && this.opts.packStorageClass ? (this.opts.packStorageClass as StorageClass) : undefined;
  }

  private async send<T>(fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw mapS3Error(e, this.ctx, key);
    }
  }

  async put(key: string, body: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    const k = this.key(key);
    const parts = body instanceof Uint8Array ? [body] : body;
    const size = parts.reduce((n, p) => n + p.length, 0);
    if (size > this.multipartThreshold && !opts.ifAbsent) return this.putMultipart(key, k, parts, size, opts.signal);
    const data = parts.length === 1 ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.length) : Buffer.concat(parts, size);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.limit(() => {
          opts.signal?.throwIfAborted(); // waited in the queue while another upload failed
          return this.client.send(
            new PutObjectCommand({
              Bucket: this.loc.bucket,
              Key: k,
              Body: data,
              ContentLength: size,
              ContentMD5: md5(data),
              StorageClass: this.classFor(key),
              ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}),
            }),
            { abortSignal: opts.signal },
          );
        });
        return;
      } catch (e) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        const code = s3Code(e);
        // 409: a concurrent conditional write of the same key is in progress; S3 asks for a retry
        if (opts.ifAbsent && code === 'ConditionalRequestConflict' && attempt < 4) {
          await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
          continue;
        }
        if (opts.ifAbsent && (httpStatus(e) === 412 || code === 'PreconditionFailed')) {
          // A retried create-only put finds its own first attempt (sent, but its answer was
          // lost): an object with exactly these bytes is ours.
          if (await this.holds(key, k, data)) return;
          throw new ObjectExistsError(key, this.location);
        }
        throw this.putError(e, key);
      }
    }
  }

  /** Whether the object at k holds exactly `data` (by its ETag, the MD5 of a simple upload, else by reading it). */
  private async holds(key: string, k: string, data: Buffer): Promise<boolean> {
    let h;
    try {
      h = await this.limit(() => this.client.send(new HeadObjectCommand({ Bucket: this.loc.bucket, Key: k })));
    } catch (e) {
      if (s3Code(e) === 'NotFound' || s3Code(e) === 'NoSuchKey') return false;
      throw mapS3Error(e, this.ctx, key);
    }
    if (h.ContentLength !== data.length) return false;
    if (h.ETag === `"${createHash('md5').update(data).digest('hex')}"`) return true;
    // with SSE-KMS or SSE-C the ETag is not the MD5: compare the bytes (indexes and locks are small)
    if (data.length > 64 * MiB) return false;
    try {
      return (await this.get(key)).equals(data);
    } catch (e) {
      if (e instanceof ObjectMissingError) return false;
      throw e;
    }
  }

  private putError(e: unknown, key: string): unknown {
    const cls = this.classFor(key);
    if (cls && (s3Code(e) === 'InvalidStorageClass' || s3Code(e) === 'InvalidArgument')) {
      return new ConfigInvalidError(`storage class ${cls} is not accepted by ${this.opts.endpointLabel} for ${this.location} (${s3Code(e)}); choose another --s3-storage-class`, { cause: e });
    }
    return mapS3Error(e, this.ctx, key);
  }

  private async putMultipart(key: string, k: string, parts: readonly Uint8Array[], size: number, signal?: AbortSignal): Promise<void> {
    const partSize = Math.max(this.partSize, Math.ceil(size / 10_000));
    signal?.throwIfAborted();
    const created = await this.client
      .send(new CreateMultipartUploadCommand({ Bucket: this.loc.bucket, Key: k, StorageClass: this.classFor(key) }), { abortSignal: signal })
      .catch((e: unknown) => {
        throw this.putError(e, key);
      });
    const uploadId = created.UploadId!;
    let failed: unknown;
    // abandoned: parts in flight are cut off (their requests aborted), no more are sent, and the
    // upload is aborted below once every part has settled
    const onAbort = () => void (failed ??= signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const results = await Promise.allSettled(
      slices(parts, size, partSize).map((slice, i) =>
        this.limit(async () => {
          if (failed) throw failed; // a part failed: send no more
          const data = Buffer.concat(slice);
          try {
            const r = await this.send(
              () =>
                this.client.send(
                  new UploadPartCommand({
                    Bucket: this.loc.bucket,
                    Key: k,
                    UploadId: uploadId,
                    PartNumber: i + 1,
                    Body: data,
                    ContentLength: data.length,
                    ContentMD5: md5(data),
                  }),
                  { abortSignal: signal },
                ),
              key,
            );
            return { PartNumber: i + 1, ETag: r.ETag };
          } catch (e) {
            failed ??= e;
            throw e;
          }
        }),
      ),
    );
    signal?.removeEventListener('abort', onAbort);
    try {
      if (failed) throw failed;
      const done = results.map((r) => (r as PromiseFulfilledResult<{ PartNumber: number; ETag?: string }>).value);
      await this.send(
        () =>
          this.client.send(
            new CompleteMultipartUploadCommand({ Bucket: this.loc.bucket, Key: k, UploadId: uploadId, MultipartUpload: { Parts: done } }),
          ),
        key,
      );
    } catch (e) {
      // every part has settled: nothing is still being sent into the upload being aborted
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.loc.bucket, Key: k, UploadId: uploadId }));
          break;
        } catch {
          /* gc aborts what is left */
        }
      }
      throw e;
    }
  }

  async get(key: string, range?: ByteRange, into?: Uint8Array): Promise<Buffer> {
    if (into && (!range || into.length < range.length)) throw new Error('get into a buffer needs a range that fits it');
    const k = this.key(key);
    if (range && range.length === 0) {
      if (!(await this.stat(key))) throw new ObjectMissingError(key, this.location);
      return Buffer.alloc(0);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.limit(async () => {
          const r = await this.client.send(
            new GetObjectCommand({
              Bucket: this.loc.bucket,
              Key: k,
              ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
            }),
          );
          if (range && !r.ContentRange) throw new RangeIgnoredError(this.opts.endpointLabel);
          let buf: Buffer;
          try {
            if (into) {
              buf = await readBodyInto(r.Body as AsyncIterable<Uint8Array>, into, range!.length);
            } else {
              const bytes = await r.Body!.transformToByteArray();
              buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
            }
          } catch (e) {
            // the SDK retried the request; the body is ours to read again (a stall past the socket
            // timeout, a reset): only these failures, so the request's own retries do not multiply
            throw e instanceof ShortReadError ? e : new BodyReadError(e);
          }
          const want = range ? Math.min(range.length, Math.max(0, rangeTotal(r.ContentRange) - range.offset)) : r.ContentLength;
          if (want !== undefined && buf.length !== want) throw new ShortReadError(buf.length, want);
          return buf;
        });
      } catch (e) {
        const code = s3Code(e);
        if (code === 'NoSuchKey') throw new ObjectMissingError(key, this.location);
        if (code === 'InvalidRange') throw new ObjectMissingError(key, this.location);
        // a body cut short or a connection reset while reading: the SDK retries only the request
        if (attempt < READ_ATTEMPTS && (e instanceof ShortReadError || e instanceof BodyReadError || isBodyError(e))) continue;
        throw mapS3Error(e instanceof BodyReadError ? e.cause : e, this.ctx, key);
      }
    }
  }

  async stat(key: string): Promise<S3ObjectInfo | undefined> {
    const k = this.key(key);
    try {
      const r = await this.limit(() => this.client.send(new HeadObjectCommand({ Bucket: this.loc.bucket, Key: k })));
      return { key, size: r.ContentLength ?? 0, mtimeMs: r.LastModified?.getTime() ?? 0, storageClass: r.StorageClass };
    } catch (e) {
      const code = s3Code(e);
      if (code === 'NotFound' || code === 'NoSuchKey' || (httpStatus(e) === 404 && code !== 'NoSuchBucket')) {
        // HEAD has no body: a 404 for a missing bucket looks like a missing key; ask once to tell them apart
        if (code === 'NotFound') await this.checkBucket();
        return undefined;
      }
      throw mapS3Error(e, this.ctx, key);
    }
  }

  private bucketChecked = false;
  private async checkBucket(): Promise<void> {
    if (this.bucketChecked) return;
    await this.send(() => this.client.send(new ListObjectsV2Command({ Bucket: this.loc.bucket, Prefix: this.loc.prefix, MaxKeys: 1 })));
    this.bucketChecked = true;
  }

  async *list(prefix: string): AsyncIterable<S3ObjectInfo> {
    checkPrefix(prefix);
    let token: string | undefined;
    do {
      const r = await this.send(() =>
        this.limit(() =>
          this.client.send(new ListObjectsV2Command({ Bucket: this.loc.bucket, Prefix: this.loc.prefix + prefix, ContinuationToken: token })),
        ),
      );
      this.bucketChecked = true;
      for (const o of r.Contents ?? []) {
        if (!o.Key || !o.Key.startsWith(this.loc.prefix)) continue;
        yield { key: o.Key.slice(this.loc.prefix.length), size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0, storageClass: o.StorageClass };
      }
      if (r.IsTruncated && !r.NextContinuationToken) {
        // stopping here would hide objects (gc would take live packs for garbage)
        throw new StorageUnreachableError(`${this.opts.endpointLabel} cut the listing of ${this.location} short without saying where to go on`);
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const k = this.key(key);
    try {
      await this.limit(() => this.client.send(new DeleteObjectCommand({ Bucket: this.loc.bucket, Key: k })));
    } catch (e) {
      if (s3Code(e) === 'NoSuchKey' || (httpStatus(e) === 404 && s3Code(e) !== 'NoSuchBucket')) return;
      throw mapS3Error(e, this.ctx, key);
    }
  }

  /** Aborts unfinished multipart uploads under the repository's prefix (run under the repository lock). */
  async removeLeftovers(dryRun: boolean): Promise<number> {
    let n = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    do {
      const r = await this.send(() =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.loc.bucket, Prefix: this.loc.prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }),
        ),
      );
      for (const u of r.Uploads ?? []) {
        // only uploads of bkp's own keys: a bucket (or prefix) may hold other programs' uploads
        if (!u.Key || !BKP_KEY.test(u.Key.slice(this.loc.prefix.length)) || !u.Key.startsWith(this.loc.prefix)) continue;
        n++;
        if (!dryRun) {
          await this.send(() => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.loc.bucket, Key: u.Key!, UploadId: u.UploadId! })));
        }
      }
      keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
      idMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return n;
  }

  destroy(): void {
    this.client.destroy();
  }
}

class RangeIgnoredError extends StorageUnreachableError {
  constructor(endpoint: string) {
    super(`${endpoint} answered a ranged read with the whole object: it does not support byte ranges as S3 does`);
  }
}

/** A body of the wrong length (cut short, or longer than asked): read again. */
class ShortReadError extends Error {
  constructor(got: number, want: number) {
    super(`${got < want ? 'short' : 'long'} read: ${got} of ${want} bytes`);
  }
}

/** Reading a response body failed (stalled past the socket timeout, reset, cut): read it again. */
class BodyReadError extends Error {
  constructor(cause: unknown) {
    super(`reading the response body failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

function isBodyError(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? s3Code(e);
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || /aborted|premature|socket hang up/i.test(String((e as Error)?.message));
}

function rangeTotal(contentRange: string | undefined): number {
  const m = /\/(\d+)$/.exec(contentRange ?? '');
  return m ? Number(m[1]) : Infinity;
}

function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('base64');
}

/** Cuts a list of buffers into consecutive slices of `partSize` bytes (the last may be shorter), without copying. */
function slices(parts: readonly Uint8Array[], size: number, partSize: number): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  let cur: Uint8Array[] = [];
  let curLen = 0;
  for (const p of parts) {
    let off = 0;
    while (off < p.length) {
      const take = Math.min(p.length - off, partSize - curLen);
      cur.push(p.subarray(off, off + take));
      curLen += take;
      off += take;
      if (curLen === partSize) {
        out.push(cur);
        cur = [];
        curLen = 0;
      }
    }
  }
  if (curLen > 0 || size === 0) out.push(cur);
  return out;
}

/** Copies a response body into `into`; more than `max` bytes is an error (a short body is the caller's check). */
async function readBodyInto(body: AsyncIterable<Uint8Array>, into: Uint8Array, max: number): Promise<Buffer> {
  let n = 0;
  for await (const part of body) {
    if (n + part.length > max) throw new ShortReadError(n + part.length, max);
    into.set(part, n);
    n += part.length;
  }
  return Buffer.from(into.buffer, into.byteOffset, n);
}
