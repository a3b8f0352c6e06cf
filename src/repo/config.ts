/**
 * The repository's `config` object (docs/format.md, "Repository config"): written once by
 * `bkp init`, read by every command to learn the chunk size and check the format version.
 */
import { randomUUID } from 'node:crypto';
import { CorruptError, UsageError } from '../errors.js';

export const REPO_FORMAT = 'bkp-repository';
export const REPO_VERSION = 2;
export const CONFIG_KEY = 'config';
export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
export const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
export const DEFAULT_COMPRESSION_LEVEL = 3;

export interface RepoConfig {
  format: typeof REPO_FORMAT;
  version: typeof REPO_VERSION;
  id: string;
  createdAt: string;
  chunkSize: number;
  packSize: number;
  compression: { algorithm: 'zstd'; level: number };
}

export function newRepoConfig(opts: { chunkSize?: number; packSize?: number; compressionLevel?: number } = {}): RepoConfig {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!validChunkSize(chunkSize)) throw new UsageError(`chunk size must be a power of two from 64 KiB to 64 MiB (got ${chunkSize})`);
  const packSize = opts.packSize ?? DEFAULT_PACK_SIZE;
  if (!Number.isInteger(packSize) || packSize < chunkSize || packSize > 1024 * 1024 * 1024) {
    throw new UsageError(`pack size must be between the chunk size and 1 GiB (got ${packSize})`);
  }
  const level = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  checkCompressionLevel(level);
  return {
    format: REPO_FORMAT,
    version: REPO_VERSION,
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    chunkSize,
    packSize,
    compression: { algorithm: 'zstd', level },
  };
}

/** Regions are cut into at most 64 pieces of a power-of-two size: the chunk size is a power of two too. */
function validChunkSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0;
}

export function checkCompressionLevel(level: number): void {
  if (!Number.isInteger(level) || level < 1 || level > 19) throw new UsageError(`compression level must be 1 to 19 (got ${level})`);
}

export function parseRepoConfig(buf: Buffer, location: string): RepoConfig {
  let c: RepoConfig;
  try {
    c = JSON.parse(buf.toString('utf8')) as RepoConfig;
  } catch {
    throw new CorruptError(`repository config in ${location} is not valid JSON`);
  }
  if (c?.format !== REPO_FORMAT) throw new CorruptError(`${location} is not a bkp repository (config has no bkp format marker)`);
  if (c.version !== REPO_VERSION) throw new CorruptError(`repository ${location} has format version ${c.version}; this bkp reads version ${REPO_VERSION}`);
  if (!validChunkSize(c.chunkSize)) throw new CorruptError(`repository config in ${location} has an invalid chunk size`);
  return c;
}
