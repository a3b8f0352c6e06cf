/**
 * A strict JSON parser that remembers the line of every value, so that a configuration error can
 * say where it is ("line 7: jobs.db.retention.keepDaily must be …"). JSON.parse cannot: it gives
 * no positions for values, and its syntax errors differ between Node versions.
 *
 * Paths are written as in messages: `jobs.db.devices[1]`. An object member's line is the line of
 * its key; an array element's line is where the element starts. Duplicate keys are an error
 * (JSON.parse would silently keep the last one, which hides mistakes in hand-written files).
 */

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(message);
  }
}

export interface ParsedJson {
  value: unknown;
  /** The line of the value at `path` ('' is the whole document); 1 when unknown. */
  lineOf(path: string): number;
}

export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base === '' ? key : `${base}.${key}`;
}

export function parseJsonWithLines(text: string): ParsedJson {
  const lines = new Map<string, number>();
  let i = 0;
  let line = 1;

  const fail = (msg: string, at = i): never => {
    // recompute line and column of `at` (it may be behind the cursor)
    let l = 1;
    let s = 0;
    for (let k = 0; k < at && k < text.length; k++) {
      if (text[k] === '\n') {
        l++;
        s = k + 1;
      }
    }
    throw new JsonSyntaxError(msg, l, at - s + 1);
  };
  const describe = (at: number): string => (at >= text.length ? 'end of file' : text[at]! < ' ' ? JSON.stringify(text[at]) : `'${text[at]}'`);

  const skip = () => {
    for (;;) {
      const c = text[i];
      if (c === '\n') {
        line++;
        i++;
      } else if (c === ' ' || c === '\t' || c === '\r') i++;
      else if (c === '/' && (text[i + 1] === '/' || text[i + 1] === '*')) fail('comments are not allowed in JSON');
      else return;
    }
  };

  const parseString = (): string => {
    const start = i;
    i++; // opening quote
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string', start);
      const c = text[i]!;
      if (c === '"') {
        i++;
        return out;
      }
      if (c === '\n') fail('unterminated string (a line break inside quotes)', start);
      if (c < ' ') fail('control character inside a string');
      if (c === '\\') {
        const e = text[i + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else fail(`invalid escape \\${e ?? ''} in a string`);
        continue;
      }
      out += c;
      i++;
    }
  };

  const parseNumber = (): number => {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (!m) fail(`unexpected ${describe(i)}`);
    i += m![0].length;
    return Number(m![0]);
  };

  const parseValue = (path: string): unknown => {
    skip();
    lines.set(path, lines.get(path) ?? line);
    const c = text[i];
    if (c === '{') return parseObject(path);
    if (c === '[') return parseArray(path);
    if (c === '"') return parseString();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    if (c === "'") fail('strings must be in double quotes');
    return fail(`unexpected ${describe(i)} where a value should be`);
  };

  const parseObject = (path: string): Record<string, unknown> => {
    const obj: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    i++; // {
    skip();
    if (text[i] === '}') {
      i++;
      return obj;
    }
    for (;;) {
      skip();
      if (text[i] === '}') fail('trailing comma before }');
      if (text[i] !== '"') fail(`expected a key in double quotes, found ${describe(i)}`);
      const keyLine = line;
      const key = parseString();
      const p = joinPath(path, key);
      if (Object.prototype.hasOwnProperty.call(obj, key)) fail(`${p} is given twice (first on line ${lines.get(p)})`, i - 1);
      lines.set(p, keyLine);
      skip();
      if (text[i] !== ':') fail(`expected ':' after "${key}", found ${describe(i)}`);
      i++;
      obj[key] = parseValue(p);
      skip();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return obj;
      }
      fail(`expected ',' or '}' after the value of ${p}, found ${describe(i)}`);
    }
  };

  const parseArray = (path: string): unknown[] => {
    const arr: unknown[] = [];
    i++; // [
    skip();
    if (text[i] === ']') {
      i++;
      return arr;
    }
    for (;;) {
      skip();
      if (text[i] === ']') fail('trailing comma before ]');
      arr.push(parseValue(joinPath(path, arr.length)));
      skip();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === ']') {
        i++;
        return arr;
      }
      fail(`expected ',' or ']' after element ${arr.length - 1} of ${path || 'the array'}, found ${describe(i)}`);
    }
  };

  if (text.charCodeAt(0) === 0xfeff) i = 1; // a byte-order mark some editors write
  const value = parseValue('');
  skip();
  if (i < text.length) fail(`unexpected ${describe(i)} after the end of the document`);
  return { value, lineOf: (p) => lines.get(p) ?? 1 };
}
