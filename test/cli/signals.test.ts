/**
 * The stop signals in a real process whose worker pool is blocked for good (an open() of a FIFO
 * that no one writes): process.exit() would wait for that thread forever. The first SIGTERM must
 * still end the process within its grace time, after the registered cleanups ran; a second one
 * ends it at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ROOT, sh, tempDir } from '../support/env.js';

const dist = (rel: string) => pathToFileURL(path.join(ROOT, 'dist', 'src', rel)).href;

/** Starts a process blocked on a FIFO with bkp's handlers (grace 1 s); resolves once it is blocked. */
async function blockedProcess(dir: string) {
  const fifo = path.join(dir, 'fifo');
  const cleaned = path.join(dir, 'cleaned');
  sh('mkfifo', [fifo]);
  const script = `
    import { promises as fs, writeFileSync } from 'node:fs';
    const { handleStopSignals } = await import(${JSON.stringify(dist('cli/signals.js'))});
    const { registerCleanup, setStopNote } = await import(${JSON.stringify(dist('cli/context.js'))});
    handleStopSignals({ graceMs: 1000, cleanupMs: 1000 });
    setStopNote('the test note');
    registerCleanup(async () => writeFileSync(${JSON.stringify(cleaned)}, 'yes'));
    void fs.open(${JSON.stringify(fifo)}, 'r'); // blocks a pool thread until someone writes
    process.stderr.write('blocked\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) => child.on('close', (code, signal) => r({ code, signal, at: Date.now() })));
  for (let i = 0; !stderr.includes('blocked'); i++) {
    if (i > 500) throw new Error(`never started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200)); // the open() is in the pool by now
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return { child, done: done.finally(() => clearTimeout(killer)), stderr: () => stderr, cleanedUp: () => existsSync(cleaned) };
}

test('the first SIGTERM ends a process blocked in the worker pool within its grace time, after the cleanups', async () => {
  const t = tempDir('bkp-signals-');
  try {
    const p = await blockedProcess(t.dir);
    const sent = Date.now();
    p.child.kill('SIGTERM');
    const r = await p.done;
    assert.equal(r.signal, 'SIGTERM', `ended by ${r.signal ?? r.code}: ${p.stderr()}`);
    assert.ok(r.at - sent < 5_000, `ended ${r.at - sent} ms after SIGTERM`);
    assert.ok(r.at - sent >= 900, 'the command had its grace time');
    assert.ok(p.cleanedUp(), 'the registered cleanup ran');
    assert.match(p.stderr(), /bkp: SIGTERM: stopping .*\nbkp: still running 1 s after SIGTERM: exiting now\nbkp: stopped by SIGTERM; the test note\n$/);
  } finally {
    t.cleanup();
  }
});

test('a second SIGINT ends it at once', async () => {
  const t = tempDir('bkp-signals-');
  try {
    const p = await blockedProcess(t.dir);
    p.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 100));
    const sent = Date.now();
    p.child.kill('SIGINT');
    const r = await p.done;
    assert.equal(r.signal, 'SIGINT', `ended by ${r.signal ?? r.code}: ${p.stderr()}`);
    assert.ok(r.at - sent < 800, `ended ${r.at - sent} ms after the second SIGINT`);
    assert.ok(p.cleanedUp(), 'the registered cleanup ran');
    assert.match(p.stderr(), /bkp: SIGINT again: exiting now\nbkp: stopped by SIGINT; the test note\n$/);
  } finally {
    t.cleanup();
  }
});
