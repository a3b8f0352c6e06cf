/**
 * How bkp talks while it works. On a TTY: progress bars (cli-progress). Otherwise (cron, pipes):
 * one plain line per phase plus a line every 10 s, never an escape code. --quiet: errors only.
 * Messages go to stderr; stdout is kept for results (tables, JSON).
 */
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import { oneLine } from '../shared/one-line.js';

// loaded on the first bar only: cron and pipes never draw one, and it costs ~50 ms to load
let cliProgress: typeof CliProgress | undefined;
const progressBars = () => (cliProgress ??= createRequire(import.meta.url)('cli-progress') as typeof CliProgress);

export interface Phase {
  update(done: number): void;
  done(): void;
}

export interface Reporter {
  phase(name: string, total: number): Phase;
  info(msg: string): void;
  /** `always`: a warning about the data itself (its consistency), printed also with --quiet. */
  warn(msg: string, opts?: { always?: boolean }): void;
  error(msg: string): void;
}

export interface ReporterOptions {
  quiet?: boolean;
  tty?: boolean;
  stream?: NodeJS.WriteStream;
  /** Seconds between plain progress lines. */
  interval?: number;
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${u[i]}`;
}

export function fmtDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

export function createReporter(opts: ReporterOptions = {}): Reporter {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? (stream.isTTY === true && process.env.TERM !== 'dumb');
  const quiet = opts.quiet ?? false;
  const line = (s: string) => stream.write(`${s}\n`);
  let bar: CliProgress.SingleBar | null = null;
  const say = (s: string) => {
    if (bar) bar.stop();
    bar = null;
    line(s);
  };
  return {
    info: (m) => {
      if (!quiet) say(m);
    },
    // a warning or an error is one line that shows no secret, whatever path or URL it names
    warn: (m, o) => {
      if (!quiet || o?.always) say(`warning: ${oneLine(m)}`);
    },
    error: (m) => say(`error: ${oneLine(m)}`),
    phase(name, total) {
      const started = Date.now();
      if (quiet) return { update() {}, done() {} };
      if (tty) {
        const bars = progressBars();
        const b = new bars.SingleBar(
          {
            stream,
            format: `${name} [{bar}] {percentage}% | {doneB}/{totalB} | {rate} | ETA {eta_formatted}`,
            hideCursor: true,
            clearOnComplete: false,
            etaBuffer: 50,
          },
          bars.Presets.shades_classic,
        );
        bar = b;
        const payload = (d: number) => ({
          doneB: fmtBytes(d),
          totalB: fmtBytes(total),
          rate: `${fmtBytes(d / Math.max(0.001, (Date.now() - started) / 1000))}/s`,
        });
        b.start(total, 0, payload(0));
        return {
          update: (d) => b.update(d, payload(d)),
          done: () => {
            b.update(total, payload(total));
            b.stop();
            if (bar === b) bar = null;
          },
        };
      }
      line(`${name}: ${fmtBytes(total)}`);
      const every = (opts.interval ?? 10) * 1000;
      let next = started + every;
      return {
        update(d) {
          const now = Date.now();
          if (now < next) return;
          next = now + every;
          const pct = total ? Math.floor((d / total) * 100) : 100;
          line(`${name}: ${pct}% ${fmtBytes(d)} of ${fmtBytes(total)}, ${fmtBytes(d / ((now - started) / 1000))}/s`);
        },
        done() {
          line(`${name}: done in ${fmtDuration(Date.now() - started)}`);
        },
      };
    },
  };
}
