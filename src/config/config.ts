/**
 * The configuration file (default /etc/bkp/config.json): named jobs, each a repository, the
 * devices to back up, and how — snapshot, difference storage, schedule, retention, S3 options,
 * metrics file. Pure: text in, a validated configuration or a ConfigInvalidError out, every
 * message naming the file, the line and the key (docs/operations.md documents the format).
 */
import { ConfigInvalidError } from '../errors.js';
import { joinPath, JsonSyntaxError, parseJsonWithLines } from './json-lines.js';
import { sizeValue } from '../shared/sizes.js';
import type { RetentionPolicy } from '../repo/retention.js';
import { hasControlCharacter } from '../shared/one-line.js';

export const DEFAULT_CONFIG_PATH = '/etc/bkp/config.json';
export const DEFAULT_DIFF_STORAGE = '/var/lib/bkp/diff-storage';
export const DEFAULT_DIFF_STORAGE_LIMIT = 16 * 1024 ** 3;

export interface S3JobOptions {
  endpoint?: string;
  pathStyle?: boolean;
  storageClass?: string;
  concurrency?: number;
}

export interface JobConfig {
  name: string;
  repo?: string;
  devices: string[];
  /** Read through a blksnap snapshot (default true); false reads the devices directly. */
  snapshot?: boolean;
  diffStorage?: string;
  /** Bytes. */
  diffStorageLimit?: number;
  blksnapDevice?: string;
  compressionLevel?: number;
  /** incr: digest fallback allowed (default true). */
  fallback?: boolean;
  schedule: { /** Milliseconds: a full is due when the newest full is this old. */ fullEvery?: number };
  retention?: RetentionPolicy;
  s3?: S3JobOptions;
  metricsFile?: string;
}

export interface BkpConfig {
  file: string;
  jobs: Map<string, JobConfig>;
}

export const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const DURATION_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "7d", "12h", "2w", "90m" → milliseconds; undefined when it is not such a duration. */
export function durationValue(text: string): number | undefined {
  const m = /^(\d+)\s*([mhdw])$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return n > 0 ? n : undefined;
}

type Obj = Record<string, unknown>;

/** Parses and validates a configuration file's text. `file` is only used in messages. */
export function parseConfig(text: string, file: string): BkpConfig {
  let parsed;
  try {
    parsed = parseJsonWithLines(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new ConfigInvalidError(`config ${file} line ${e.line} column ${e.column}: ${e.message}`);
    throw e;
  }
  const bad = (path: string, what: string): never => {
    throw new ConfigInvalidError(`config ${file} line ${parsed.lineOf(path)}: ${path || 'the file'} ${what}`);
  };
  const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
  const obj = (v: unknown, path: string): Obj => (isObj(v) ? v : bad(path, 'must be an object { … }'));
  const known = (o: Obj, path: string, keys: readonly string[]) => {
    for (const k of Object.keys(o)) {
      if (!keys.includes(k)) bad(joinPath(path, k), `is not a known key (known here: ${keys.join(', ')})`);
    }
  };
  const str = (o: Obj, path: string, k: string): string | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') bad(joinPath(path, k), 'must be a non-empty string');
    if (hasControlCharacter(v as string)) bad(joinPath(path, k), 'holds a control character (a newline, tab or escape)');
    return v as string;
  };
  const bool = (o: Obj, path: string, k: string): boolean | undefined => {
    const v = o[k];
    if (v === undefined || typeof v === 'boolean') return v;
    return bad(joinPath(path, k), 'must be true or false');
  };
  const int = (o: Obj, path: string, k: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      bad(joinPath(path, k), max === Number.MAX_SAFE_INTEGER ? `must be a whole number >= ${min}` : `must be a whole number from ${min} to ${max}`);
    }
    return v as number;
  };

  const root = obj(parsed.value, '');
  known(root, '', ['jobs']);
  if (root.jobs === undefined) bad('', 'has no "jobs" object');
  const jobsObj = obj(root.jobs, 'jobs');
  const jobs = new Map<string, JobConfig>();
  for (const [name, raw] of Object.entries(jobsObj)) {
    const p = joinPath('jobs', name);
    if (!JOB_NAME.test(name)) bad(p, 'is not a valid job name (letters, digits, "_", "-", "."; at most 64; starting with a letter or digit)');
    const j = obj(raw, p);
    known(j, p, ['repo', 'devices', 'snapshot', 'diffStorage', 'diffStorageLimit', 'blksnapDevice', 'compressionLevel', 'fallback', 'schedule', 'retention', 's3', 'metricsFile']);

    if (j.devices === undefined) bad(p, 'needs "devices": the block devices or image files to back up');
    if (!Array.isArray(j.devices) || j.devices.length === 0) bad(joinPath(p, 'devices'), 'must be a non-empty array of device paths');
    const devices = (j.devices as unknown[]).map((d, i) =>
      typeof d === 'string' && d.startsWith('/')
        ? hasControlCharacter(d)
          ? bad(joinPath(joinPath(p, 'devices'), i), 'holds a control character (a newline, tab or escape)')
          : d
        : bad(joinPath(joinPath(p, 'devices'), i), 'must be an absolute path such as "/dev/sdb"'),
    );
    const seen = new Map<string, number>();
    devices.forEach((d, i) => {
      if (seen.has(d)) bad(joinPath(joinPath(p, 'devices'), i), `names ${d} a second time`);
      seen.set(d, i);
    });

    let diffStorageLimit: number | undefined;
    if (j.diffStorageLimit !== undefined) {
      const v = j.diffStorageLimit;
      diffStorageLimit = typeof v === 'string' || typeof v === 'number' ? sizeValue(v) : undefined;
      if (diffStorageLimit === undefined) bad(joinPath(p, 'diffStorageLimit'), 'must be a size such as "16G" or "512M"');
    }

    const schedule: JobConfig['schedule'] = {};
    if (j.schedule !== undefined) {
      const sp = joinPath(p, 'schedule');
      const s = obj(j.schedule, sp);
      known(s, sp, ['fullEvery']);
      const fe = str(s, sp, 'fullEvery');
      if (fe !== undefined) {
        schedule.fullEvery = durationValue(fe);
        if (schedule.fullEvery === undefined) bad(joinPath(sp, 'fullEvery'), 'must be a duration such as "7d", "2w", "24h" or "90m"');
      }
    }

    let retention: RetentionPolicy | undefined;
    if (j.retention !== undefined) {
      const rp = joinPath(p, 'retention');
      const r = obj(j.retention, rp);
      known(r, rp, ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly']);
      retention = {
        last: int(r, rp, 'keepLast', 0),
        hourly: int(r, rp, 'keepHourly', 0),
        daily: int(r, rp, 'keepDaily', 0),
        weekly: int(r, rp, 'keepWeekly', 0),
        monthly: int(r, rp, 'keepMonthly', 0),
      };
      if (!Object.values(retention).some((v) => v !== undefined && v > 0)) bad(rp, 'keeps nothing: give at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly above 0 (or remove retention)');
    }

    let s3: S3JobOptions | undefined;
    if (j.s3 !== undefined) {
      const sp = joinPath(p, 's3');
      const s = obj(j.s3, sp);
      known(s, sp, ['endpoint', 'pathStyle', 'storageClass', 'concurrency']);
      const endpoint = str(s, sp, 'endpoint');
      if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) bad(joinPath(sp, 'endpoint'), 'must be a URL such as "https://s3.eu-central-1.amazonaws.com"');
      const storageClass = str(s, sp, 'storageClass');
      if (storageClass !== undefined && !/^[A-Z][A-Z_]*$/.test(storageClass)) bad(joinPath(sp, 'storageClass'), 'must be an S3 storage class such as "STANDARD" or "STANDARD_IA"');
      s3 = { endpoint, pathStyle: bool(s, sp, 'pathStyle'), storageClass, concurrency: int(s, sp, 'concurrency', 1, 64) };
    }

    const repo = str(j, p, 'repo');
    if (s3 && repo !== undefined && !repo.startsWith('s3://')) bad(joinPath(p, 's3'), `is given but repo ${repo} is not an s3:// repository`);
    const metricsFile = str(j, p, 'metricsFile');
    if (metricsFile !== undefined && !metricsFile.startsWith('/')) bad(joinPath(p, 'metricsFile'), 'must be an absolute path');
    const diffStorage = str(j, p, 'diffStorage');
    if (diffStorage !== undefined && !diffStorage.startsWith('/')) bad(joinPath(p, 'diffStorage'), 'must be an absolute path');

    jobs.set(name, {
      name,
      repo,
      devices,
      snapshot: bool(j, p, 'snapshot'),
      diffStorage,
      diffStorageLimit,
      blksnapDevice: str(j, p, 'blksnapDevice'),
      compressionLevel: int(j, p, 'compressionLevel', 1, 19),
      fallback: bool(j, p, 'fallback'),
      schedule,
      retention,
      s3,
      metricsFile,
    });
  }
  return { file, jobs };
}
