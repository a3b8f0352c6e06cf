/**
 * A small JSON Schema validator for the subset docs/schema/ uses: type (with "integer" and
 * unions), properties, required, additionalProperties (boolean), items, enum, const, minimum,
 * anyOf, and $ref to a file of docs/schema or a #/$defs/ pointer inside one. Any other keyword
 * is an error, so a schema cannot silently say more than is checked.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './env.js';

export const SCHEMA_DIR = path.join(ROOT, 'docs', 'schema');
type Schema = Record<string, unknown>;
const KNOWN = new Set(['$schema', '$id', 'title', 'description', '$defs', 'type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const', 'minimum', 'anyOf', '$ref']);
const files = new Map<string, Schema>();

export function loadSchema(file: string): Schema {
  let s = files.get(file);
  if (!s) {
    s = JSON.parse(readFileSync(path.join(SCHEMA_DIR, file), 'utf8')) as Schema;
    files.set(file, s);
  }
  return s;
}

function resolve(ref: string, file: string): { schema: Schema; file: string } {
  const [f, pointer] = ref.split('#');
  const target = f ? f : file;
  let s: unknown = loadSchema(target);
  for (const part of (pointer ?? '').split('/').filter(Boolean)) s = (s as Schema)[part];
  if (!s) throw new Error(`unresolved $ref ${ref} in ${file}`);
  return { schema: s as Schema, file: target };
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Problems with `value` against `schema` (empty: valid). */
export function validate(value: unknown, schema: Schema, file: string, at = '$'): string[] {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`${file}: schema keyword ${k} is not supported by the test validator`);
  if (schema.$ref) {
    const r = resolve(schema.$ref as string, file);
    return validate(value, r.schema, r.file, at);
  }
  const errs: string[] = [];
  if (schema.anyOf) {
    const all = (schema.anyOf as Schema[]).map((s) => validate(value, s, file, at));
    if (all.every((e) => e.length)) errs.push(`${at}: matches none of anyOf (${all.map((e) => e[0]).join(' | ')})`);
    return errs;
  }
  if (schema.type !== undefined) {
    const types = ([] as string[]).concat(schema.type as string);
    const t = typeOf(value);
    const ok = types.some((x) => x === t || (x === 'integer' && t === 'number' && Number.isInteger(value)));
    if (!ok) return [`${at}: ${JSON.stringify(value)} is not of type ${types.join('|')}`];
  }
  if ('const' in schema && value !== schema.const) errs.push(`${at}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`);
  if (schema.enum && !(schema.enum as unknown[]).includes(value)) errs.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) errs.push(`${at}: ${value} < ${schema.minimum}`);
  if (typeOf(value) === 'object') {
    const o = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in o)) errs.push(`${at}: required ${r} is missing`);
    for (const [k, v] of Object.entries(o)) {
      if (props[k]) errs.push(...validate(v, props[k], file, `${at}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${at}: ${k} is not in the schema`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errs.push(...validate(v, schema.items as Schema, file, `${at}[${i}]`)));
  return errs;
}

export function assertMatchesSchema(value: unknown, file: string): void {
  const errs = validate(value, loadSchema(file), file);
  if (errs.length) throw new Error(`output does not match docs/schema/${file}:\n  ${errs.join('\n  ')}\n${JSON.stringify(value, null, 2).slice(0, 2000)}`);
}
