/**
 * The S3 docs stay true to the code (issue 18 item 9): docs/operations.md and docs/s3.md give one
 * and the same IAM policy, it allows every request src/storage/s3 sends (and nothing bkp never
 * calls), and every docs/operations.md section a message names exists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../support/env.js';

const doc = (f: string) => readFileSync(path.join(ROOT, 'docs', f), 'utf8');

function policyIn(text: string): { Statement: Array<{ Action: string | string[]; Resource: string; Condition?: unknown }> } {
  const m = /```json\n(\{\n {2}"Version": "2012-10-17"[\s\S]*?)```/.exec(text);
  assert.ok(m, 'an IAM policy block');
  return JSON.parse(m[1]!);
}

/** The IAM action each S3 API call of the SDK needs. */
const ACTION: Record<string, string> = {
  ListObjectsV2: 's3:ListBucket',
  ListMultipartUploads: 's3:ListBucketMultipartUploads',
  GetObject: 's3:GetObject',
  HeadObject: 's3:GetObject',
  PutObject: 's3:PutObject',
  CreateMultipartUpload: 's3:PutObject',
  UploadPart: 's3:PutObject',
  CompleteMultipartUpload: 's3:PutObject',
  AbortMultipartUpload: 's3:AbortMultipartUpload',
  DeleteObject: 's3:DeleteObject',
  RestoreObject: 's3:RestoreObject',
};

test('operations.md and s3.md give the same IAM policy, and it fits the requests bkp sends', () => {
  const ops = policyIn(doc('operations.md'));
  assert.deepEqual(policyIn(doc('s3.md')), ops);
  const src = path.join(ROOT, 'src', 'storage', 's3');
  const sent = new Set<string>();
  for (const f of readdirSync(src).filter((n) => n.endsWith('.ts'))) {
    for (const m of readFileSync(path.join(src, f), 'utf8').matchAll(/new (\w+)Command\(/g)) sent.add(m[1]!);
  }
  assert.ok(sent.has('PutObject') && sent.has('ListMultipartUploads'), [...sent].join(' '));
  const needed = new Set([...sent].map((c) => ACTION[c] ?? `unknown call ${c}`));
  const granted = new Set(ops.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])));
  assert.deepEqual([...granted].sort(), [...needed].sort(), 'exactly the actions the code needs');
});

test('every docs/operations.md section that a message names exists', () => {
  const headings = new Set([...doc('operations.md').matchAll(/^#+ (.+)$/gm)].map((m) => m[1]!.trim()));
  const refs: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/docs\/operations\.md, "([^"]+)"/g)) refs.push(m[1]!);
    }
  };
  walk(path.join(ROOT, 'src'));
  assert.ok(refs.includes('Cold storage classes'), refs.join(', '));
  for (const r of refs) assert.ok(headings.has(r), `docs/operations.md has no section "${r}"`);
});
