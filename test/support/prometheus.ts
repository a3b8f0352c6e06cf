/**
 * A strict reader of the Prometheus text exposition format (0.0.4), enough to prove that what
 * bkp writes is what node_exporter's textfile collector accepts: HELP/TYPE before samples, one
 * TYPE per family, families not interleaved, valid names, quoted and escaped label values, no
 * duplicate series, float values, a final newline.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function parsePrometheusText(text: string): { samples: Sample[]; types: Map<string, string> } {
  if (!text.endsWith('\n')) throw new Error('the text must end with a newline');
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const where = `line ${i + 1}: ${line}`;
      if (line.startsWith('#')) {
        const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
        if (!m) return; // a plain comment
        if (!NAME.test(m[2]!)) throw new Error(`bad metric name, ${where}`);
        if (m[1] === 'TYPE') {
          if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`bad type, ${where}`);
          if (types.has(m[2]!)) throw new Error(`second TYPE, ${where}`);
          types.set(m[2]!, m[3]!);
        }
        if (current !== m[2]) {
          if (current) closed.add(current);
          if (closed.has(m[2]!)) throw new Error(`family ${m[2]} interleaved, ${where}`);
          current = m[2];
        }
        return;
      }
      if (line.trim() === '') throw new Error(`empty line, ${where}`);
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
      if (!m) throw new Error(`not a sample, ${where}`);
      const name = m[1]!;
      if (!types.has(name)) throw new Error(`sample before its TYPE, ${where}`);
      if (name !== current) throw new Error(`sample outside its family, ${where}`);
      const labels: Record<string, string> = {};
      let rest = m[3] ?? '';
      while (rest.length) {
        const lm = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
        if (!lm || !LABEL.test(lm[1]!)) throw new Error(`bad labels, ${where}`);
        if (lm[1]! in labels) throw new Error(`label twice, ${where}`);
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        rest = rest.slice(lm[0].length);
      }
      const value = /^(NaN|[+-]Inf)$/.test(m[4]!) ? NaN : Number(m[4]);
      if (Number.isNaN(value) && !/^(NaN|[+-]Inf)$/.test(m[4]!)) throw new Error(`bad value, ${where}`);
      const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
      if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
      seen.add(key);
      samples.push({ name, labels, value });
    });
  return { samples, types };
}

export function sampleOf(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
