/** Paths and process helpers shared by the tests. */
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';

/** The package root: tests run from dist/test/<dir>/ (or from test/<dir>/). */
export const ROOT = (() => {
  let d = path.dirname(fileURLToPath(import.meta.url));
  while (!d.endsWith(`${path.sep}dist`) && d !== path.dirname(d)) d = path.dirname(d);
  return d.endsWith(`${path.sep}dist`) ? path.dirname(d) : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
})();
/**
 * What the tests run as `bkp`: the real CLI through the test entry point, which installs the
 * blksnap fake and the crash and pause points when their variables are set (test/bin/bkp.ts).
 */
export const BKP = path.join(ROOT, 'dist', 'test', 'bin', 'bkp.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real bkp command line. */
export function runBkp(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BKP, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface KilledRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Wall time until the process ended. */
  ms: number;
}

/** Runs the real bkp command line and, when `killAfterMs` is given, SIGKILLs it after that long. */
export function runBkpKilled(args: string[], env: NodeJS.ProcessEnv, killAfterMs?: number): Promise<KilledRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BKP, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, ms: Date.now() - started });
    });
  });
}

export function tempDir(prefix = 'bkp-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}
