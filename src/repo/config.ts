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

export const MAX_PACK_SIZE = 1024 * 1024 * 1024;

/**
 * What is wrong with a config's fields, in words, or undefined: the one set of bounds that
 * `bkp init` checks before writing a config and every command checks when it opens one.
 */
export function configFieldProblem(c: Partial<Pick<RepoConfig, 'chunkSize' | 'packSize' | 'compression' | 'id' | 'createdAt'>>): string | undefined {
  const { chunkSize, packSize } = c;
  // regions are cut into at most 64 pieces of a power-of-two size: the chunk size is a power of two too
  if (!Number.isInteger(chunkSize) || chunkSize! < MIN_CHUNK_SIZE || chunkSize! > MAX_CHUNK_SIZE || (chunkSize! & (chunkSize! - 1)) !== 0) {
    return `chunk size must be a power of two from 64 KiB to 64 MiB (got ${chunkSize})`;
  }
  if (!Number.isInteger(packSize) || packSize! < chunkSize! || packSize! > MAX_PACK_SIZE) return `pack size must be between the chunk size and 1 GiB (got ${packSize})`;
  if (c.compression?.algorithm !== 'zstd') return `compression algorithm must be zstd (got ${JSON.stringify(c.compression?.algorithm)})`;
  const level = c.compression.level;
  if (!Number.isInteger(level) || level < 1 || level > 19) return `compression level must be 1 to 19 (got ${level})`;
  if (typeof c.id !== 'string' || !/^[0-9a-f-]{36}$/i.test(c.id)) return `id must be a UUID (got ${JSON.stringify(c.id)})`;
  if (typeof c.createdAt !== 'string' || Number.isNaN(Date.parse(c.createdAt))) return `createdAt must be a date and time (got ${JSON.stringify(c.createdAt)})`;
  return undefined;
}

export function newRepoConfig(opts: { chunkSize?: number; packSize?: number; compressionLevel?: number } = {}): RepoConfig {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const packSize = opts.packSize ?? DEFAULT_PACK_SIZE;
  const level = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  const config: RepoConfig = {
    format: REPO_FORMAT,
    version: REPO_VERSION,
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    chunkSize,
    packSize,
    compression: { algorithm: 'zstd', level },
  };
  const problem = configFieldProblem(config);
  if (problem) throw new UsageError(problem);
  return config;
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
  // a config edited or damaged out of bounds would make backups misbehave (packSize 1: one pack per chunk)
  const problem = configFieldProblem(c);
  if (problem) throw new CorruptError(`repository config in ${location} is invalid: ${problem}`);
  return c;
}
