/** Finding and reading the configuration file: --config, else $BKP_CONFIG, else /etc/bkp/config.json. */
import { promises as fs } from 'node:fs';
import { ConfigInvalidError, fromSystemError, isSystemError } from '../errors.js';
import { DEFAULT_CONFIG_PATH, parseConfig, type BkpConfig, type JobConfig } from './config.js';

export function configPathOf(flag: string | undefined): { path: string; from: string } {
  if (flag) return { path: flag, from: '--config' };
  if (process.env.BKP_CONFIG) return { path: process.env.BKP_CONFIG, from: 'BKP_CONFIG' };
  return { path: DEFAULT_CONFIG_PATH, from: 'the default' };
}

export async function loadConfig(flag: string | undefined): Promise<BkpConfig> {
  const { path, from } = configPathOf(flag);
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    if (isSystemError(e, 'ENOENT')) {
      throw new ConfigInvalidError(
        from === 'the default'
          ? `no configuration file: ${path} does not exist (write one, see docs/operations.md, or name it with --config or BKP_CONFIG)`
          : `configuration file ${path} (from ${from}) does not exist`,
      );
    }
    if (isSystemError(e, 'EISDIR')) throw new ConfigInvalidError(`configuration file ${path} is a directory`);
    throw fromSystemError(e, 'configuration file', path);
  }
  return parseConfig(text, path);
}

export function jobOf(config: BkpConfig, name: string): JobConfig {
  const job = config.jobs.get(name);
  if (!job) {
    const names = [...config.jobs.keys()];
    throw new ConfigInvalidError(`config ${config.file} has no job "${name}" (${names.length ? `jobs: ${names.join(', ')}` : 'it defines no jobs'})`);
  }
  return job;
}
