/**
 * The storage conformance suite: what every Target (local directory, S3, wrappers) must do.
 * A target's test file is one call: `targetConformance('local', async () => ({ target, cleanup }))`.
 *
 * Every test gets a fresh, empty target from `make`, so the suite needs nothing but the Target
 * interface and runs unchanged against a remote store.
 */
import { describe, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ObjectExistsError, ObjectMissingError, type ObjectInfo, type Target } from '../../src/storage/target.js';

export type MakeTarget = () => Promise<{ target: Target; cleanup: () => Promise<void> }>;

export interface ConformanceOptions {
  /**
   * Tests a target is known to fail, by exact title, with the reason ("bug: ..."): they still run,
   * reported as todo, so the suite stays green for that target while every other target is held
   * to them.
   */
  knownBugs?: Record<string, string>;
}

const MiB = 1024 * 1024;

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

async function keys(target: Target, prefix: string): Promise<string[]> {
  return (await collect(target.list(prefix))).map((o) => o.key);
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The same test as the rest of the repository uses for a valid key, written out independently. */
function isValidKey(k: string): boolean {
  return k.length > 0 && !k.startsWith('/') && !k.endsWith('/') && k.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

export function targetConformance(name: string, make: MakeTarget, opts: ConformanceOptions = {}): void {
  const knownBugs = opts.knownBugs ?? {};
  const used = new Set<string>();
  /** node:test's test(), with a todo for the titles this target is known to fail. */
  function test(title: string, a: { timeout?: number } | (() => Promise<void> | void), b?: () => Promise<void> | void): void {
    const fn = typeof a === 'function' ? a : b!;
    const options = typeof a === 'function' ? {} : a;
    const todo = knownBugs[title];
    if (todo !== undefined) used.add(title);
    nodeTest(title, todo === undefined ? options : { ...options, todo }, fn);
  }

  /** Runs `fn` against a fresh target and always cleans it up. */
  async function withTarget(fn: (t: Target) => Promise<void>): Promise<void> {
    const { target, cleanup } = await make();
    try {
      await fn(target);
    } finally {
      await cleanup();
    }
  }

  describe(`Target conformance: ${name}`, () => {
    test('says where it is', () =>
      withTarget(async (t) => {
        assert.equal(typeof t.location, 'string');
        assert.ok(t.location.length > 0);
      }));

    describe('put and get', () => {
      test('a single buffer round-trips byte for byte', () =>
        withTarget(async (t) => {
          const body = randomBytes(10_000);
          await t.put('data/one', body);
          assert.deepEqual(await t.get('data/one'), body);
        }));

      test('an array of buffers is stored as their concatenation', () =>
        withTarget(async (t) => {
          const parts = [randomBytes(100), Buffer.alloc(0), randomBytes(1), randomBytes(65_537), Buffer.alloc(0)];
          await t.put('data/parts', parts);
          assert.deepEqual(await t.get('data/parts'), Buffer.concat(parts));
        }));

      test('a Uint8Array view stores only the bytes of the view', () =>
        withTarget(async (t) => {
          const backing = randomBytes(4096);
          const view = new Uint8Array(backing.buffer, backing.byteOffset + 1000, 123);
          const part = backing.subarray(2000, 2050);
          await t.put('data/view', view);
          await t.put('data/view-parts', [part, view]);
          assert.deepEqual(await t.get('data/view'), Buffer.from(view));
          assert.deepEqual(await t.get('data/view-parts'), Buffer.concat([part, view]));
        }));

      test('an empty object (empty buffer or no parts) exists and is empty', () =>
        withTarget(async (t) => {
          await t.put('empty/buffer', Buffer.alloc(0));
          await t.put('empty/parts', []);
          for (const k of ['empty/buffer', 'empty/parts']) {
            assert.equal((await t.get(k)).length, 0, k);
            assert.equal((await t.stat(k))?.size, 0, k);
          }
          assert.deepEqual(await keys(t, 'empty/'), ['empty/buffer', 'empty/parts']);
        }));

      test('a multi-MiB body round-trips', () =>
        withTarget(async (t) => {
          const body = randomBytes(5 * MiB + 3);
          await t.put('big/single', body);
          const parts = [randomBytes(3 * MiB), randomBytes(7), randomBytes(2 * MiB + 1)];
          await t.put('big/parts', parts);
          assert.equal(sha(await t.get('big/single')), sha(body));
          assert.equal(sha(await t.get('big/parts')), sha(Buffer.concat(parts)));
          assert.equal((await t.stat('big/single'))?.size, body.length);
        }));

      test('more than 1024 parts (past IOV_MAX) keep their order', () =>
        withTarget(async (t) => {
          // distinct content per part, some empty, so a dropped, repeated or reordered part shows
          const parts = Array.from({ length: 3001 }, (_, i) => (i % 97 === 0 ? Buffer.alloc(0) : Buffer.from(`<${i}:${'x'.repeat(i % 300)}>`)));
          await t.put('many/parts', parts);
          const got = await t.get('many/parts');
          assert.equal(got.length, parts.reduce((n, p) => n + p.length, 0));
          assert.ok(got.equals(Buffer.concat(parts)));
        }));

      test('put replaces an existing object, larger or smaller', () =>
        withTarget(async (t) => {
          await t.put('r/k', Buffer.alloc(5000, 1));
          await t.put('r/k', Buffer.from('short'));
          assert.deepEqual(await t.get('r/k'), Buffer.from('short'));
          assert.equal((await t.stat('r/k'))?.size, 5);
          await t.put('r/k', Buffer.alloc(9000, 2));
          assert.deepEqual(await t.get('r/k'), Buffer.alloc(9000, 2));
          assert.deepEqual(await keys(t, ''), ['r/k']);
        }));

      test('a put whose signal was aborted (another upload failed) rejects with its reason and stores nothing', () =>
        withTarget(async (t) => {
          const stop = new AbortController();
          const why = new Error('another upload failed');
          stop.abort(why);
          await assert.rejects(t.put('r/abandoned', randomBytes(4096), { signal: stop.signal }), (e: unknown) => e === why);
          assert.equal(await t.stat('r/abandoned'), undefined);
          assert.deepEqual(await keys(t, ''), []);
        }));
    });

    describe('ranged get', () => {
      const size = 100_000;
      const cases: Array<[string, (body: Buffer) => { offset: number; length: number }]> = [
        ['the start', () => ({ offset: 0, length: 10 })],
        ['the middle', () => ({ offset: 33_333, length: 4_097 })],
        ['the end', (b) => ({ offset: b.length - 10, length: 10 })],
        ['exactly to the end from the middle', (b) => ({ offset: 50_001, length: b.length - 50_001 })],
        ['the whole object', (b) => ({ offset: 0, length: b.length })],
        ['the last byte', (b) => ({ offset: b.length - 1, length: 1 })],
      ];
      for (const [what, range] of cases) {
        test(`reads ${what}`, () =>
          withTarget(async (t) => {
            const body = randomBytes(size);
            await t.put('obj', body);
            const r = range(body);
            assert.deepEqual(await t.get('obj', r), body.subarray(r.offset, r.offset + r.length));
          }));
      }

      test('reads a range into a caller\'s buffer (also shared memory): the result is a view of it', () =>
        withTarget(async (t) => {
          const body = randomBytes(size);
          await t.put('obj', body);
          for (const into of [new Uint8Array(20_000), new Uint8Array(new SharedArrayBuffer(20_000), 100, 15_000)]) {
            const got = await t.get('obj', { offset: 1234, length: 10_000 }, into);
            assert.deepEqual(Buffer.from(got), body.subarray(1234, 11_234));
            assert.equal(got.buffer, into.buffer, 'read into the buffer given');
            assert.equal(got.byteOffset, into.byteOffset);
            // a range past the end: what there is, no more
            const tail = await t.get('obj', { offset: size - 10, length: 100 }, into);
            assert.deepEqual(Buffer.from(tail), body.subarray(size - 10));
          }
          await assert.rejects(t.get('obj', { offset: 0, length: 100 }, new Uint8Array(99)), /needs a range that fits/);
          await assert.rejects(t.get('obj', undefined, new Uint8Array(size)), /needs a range that fits/);
        }));

      test('reads ranges of an object stored from parts', () =>
        withTarget(async (t) => {
          const parts = Array.from({ length: 50 }, () => randomBytes(1000));
          const whole = Buffer.concat(parts);
          await t.put('obj', parts);
          for (const [offset, length] of [[999, 2], [0, 1000], [25_000, 10_000], [49_000, 1000]] as const) {
            assert.deepEqual(await t.get('obj', { offset, length }), whole.subarray(offset, offset + length), `${offset}+${length}`);
          }
        }));
    });

    describe('missing objects', () => {
      test('get of a missing key is ObjectMissingError naming the key', () =>
        withTarget(async (t) => {
          await assert.rejects(t.get('nope/never'), (e: unknown) => e instanceof ObjectMissingError && e.key === 'nope/never');
          await assert.rejects(t.get('nope/never', { offset: 0, length: 10 }), ObjectMissingError);
        }));

      test('get of a deleted key is ObjectMissingError', () =>
        withTarget(async (t) => {
          await t.put('a/b', Buffer.from('x'));
          await t.delete('a/b');
          await assert.rejects(t.get('a/b'), ObjectMissingError);
        }));

      test('a key that is only a prefix of other keys is not an object', () =>
        withTarget(async (t) => {
          await t.put('dir/inner', Buffer.from('x'));
          assert.equal(await t.stat('dir'), undefined);
          await assert.rejects(t.get('dir'), ObjectMissingError);
          await assert.rejects(t.get('dir', { offset: 0, length: 1 }), ObjectMissingError);
        }));
    });

    describe('stat', () => {
      test('gives size and a plausible modification time', () =>
        withTarget(async (t) => {
          const before = Date.now();
          await t.put('s/k', randomBytes(12_345));
          const info = await t.stat('s/k');
          assert.ok(info);
          assert.equal(info.key, 's/k');
          assert.equal(info.size, 12_345);
          // generous window: a remote store's clock may differ from ours
          assert.ok(Math.abs(info.mtimeMs - before) < 3600_000, `mtime ${info.mtimeMs} vs now ${before}`);
        }));

      test('a missing key is undefined', () =>
        withTarget(async (t) => {
          assert.equal(await t.stat('s/missing'), undefined);
          assert.equal(await t.stat('missing-at-top'), undefined);
        }));
    });

    describe('list', () => {
      const objects: Record<string, number> = { 'a/b/c': 3, 'a/b/d': 4, 'a/bx': 5, 'a/e': 6, ab: 7, b: 8, 'c/d/e/f/g': 9 };
      async function fill(t: Target): Promise<void> {
        for (const [k, n] of Object.entries(objects)) await t.put(k, Buffer.alloc(n, 7));
      }

      const prefixes: Array<[string, string[]]> = [
        ['', Object.keys(objects).sort()],
        ['a/', ['a/b/c', 'a/b/d', 'a/bx', 'a/e']],
        ['a', ['a/b/c', 'a/b/d', 'a/bx', 'a/e', 'ab']],
        ['a/b', ['a/b/c', 'a/b/d', 'a/bx']],
        ['a/b/', ['a/b/c', 'a/b/d']],
        ['a/b/c', ['a/b/c']],
        ['c/d/e/f/', ['c/d/e/f/g']],
        ['c/d/e/f/g', ['c/d/e/f/g']],
        ['c/d/e/f/gg', []],
        ['zz', []],
        ['zz/', []],
        ['b/', []],
      ];
      for (const [prefix, want] of prefixes) {
        test(`prefix ${JSON.stringify(prefix)} lists exactly the keys that start with it`, () =>
          withTarget(async (t) => {
            await fill(t);
            const got = await collect(t.list(prefix));
            assert.deepEqual(got.map((o) => o.key), want);
            for (const o of got) assert.equal(o.size, objects[o.key], `size of ${o.key}`);
          }));
      }

      test('an empty target lists nothing', () =>
        withTarget(async (t) => {
          assert.deepEqual(await keys(t, ''), []);
          assert.deepEqual(await keys(t, 'packs/'), []);
        }));

      test('a prefix that climbs out of the target lists nothing of outside', () =>
        withTarget(async (t) => {
          await t.put('inside/k', Buffer.from('x'));
          for (const prefix of ['../', '..', '/', './']) {
            let listed: string[] = [];
            try {
              listed = await keys(t, prefix);
            } catch {
              continue; // refusing the prefix is fine too
            }
            assert.deepEqual(listed.filter((k) => !isValidKey(k)), [], `prefix ${prefix} listed keys outside the target`);
          }
        }));

      test('objects being written are invisible until whole', () =>
        withTarget(async (t) => {
          const size = 2 * MiB;
          const want = Array.from({ length: 12 }, (_, i) => `w/obj-${i}`);
          let done = false;
          const seen: ObjectInfo[] = [];
          const writer = (async () => {
            try {
              // a few at a time so that several puts are in flight at every listing
              for (let i = 0; i < want.length; i += 4) {
                await Promise.all(want.slice(i, i + 4).map((k) => t.put(k, [Buffer.alloc(size / 2, 1), Buffer.alloc(size / 2, 2)])));
              }
            } finally {
              done = true;
            }
          })();
          let listings = 0;
          try {
            while (!done) {
              seen.push(...(await collect(t.list(''))));
              listings++;
            }
          } finally {
            await writer; // never leave a put running into the cleanup
          }
          seen.push(...(await collect(t.list(''))));
          assert.ok(listings > 0);
          for (const o of seen) {
            assert.ok(want.includes(o.key), `listed unexpected object ${o.key}`);
            assert.equal(o.size, size, `${o.key} listed with partial size`);
          }
          assert.deepEqual(await keys(t, ''), want.sort());
        }));
    });

    describe('delete', () => {
      test('removes the object from get, stat and list', () =>
        withTarget(async (t) => {
          await t.put('d/x', Buffer.from('x'));
          await t.put('d/y', Buffer.from('y'));
          await t.delete('d/x');
          await assert.rejects(t.get('d/x'), ObjectMissingError);
          assert.equal(await t.stat('d/x'), undefined);
          assert.deepEqual(await keys(t, ''), ['d/y']);
          assert.deepEqual(await t.get('d/y'), Buffer.from('y'));
        }));

      test('deleting a missing key is not an error', () =>
        withTarget(async (t) => {
          await t.delete('never/was');
          await t.put('once', Buffer.from('x'));
          await t.delete('once');
          await t.delete('once');
          assert.deepEqual(await keys(t, ''), []);
        }));

      test('deleting a key that is only a prefix of other keys leaves them alone', () =>
        withTarget(async (t) => {
          await t.put('p/q', Buffer.from('x'));
          await t.delete('p');
          assert.deepEqual(await t.get('p/q'), Buffer.from('x'));
        }));

      test('a deleted key can be written again, also with ifAbsent', () =>
        withTarget(async (t) => {
          await t.put('again', Buffer.from('one'));
          await t.delete('again');
          await t.put('again', Buffer.from('two'), { ifAbsent: true });
          assert.deepEqual(await t.get('again'), Buffer.from('two'));
        }));
    });

    describe('put with ifAbsent', () => {
      test('creates a new object', () =>
        withTarget(async (t) => {
          await t.put('x/new', Buffer.from('first'), { ifAbsent: true });
          assert.deepEqual(await t.get('x/new'), Buffer.from('first'));
        }));

      test('refuses an existing key with ObjectExistsError and keeps the original', () =>
        withTarget(async (t) => {
          const original = randomBytes(3000);
          await t.put('x/k', original);
          await assert.rejects(
            t.put('x/k', Buffer.from('intruder'), { ifAbsent: true }),
            (e: unknown) => e instanceof ObjectExistsError && e.key === 'x/k',
          );
          await assert.rejects(t.put('x/k', [Buffer.from('a'), Buffer.from('b')], { ifAbsent: true }), ObjectExistsError);
          assert.deepEqual(await t.get('x/k'), original);
          assert.equal((await t.stat('x/k'))?.size, original.length);
          assert.deepEqual(await keys(t, ''), ['x/k']);
        }));

      test('of the same key concurrently: exactly one succeeds, and its content is stored', () =>
        withTarget(async (t) => {
          for (let round = 0; round < 5; round++) {
            const key = `race/${round}`;
            const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(64 * 1024 + i, i + 1));
            const results = await Promise.allSettled(bodies.map((b) => t.put(key, b, { ifAbsent: true })));
            const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
            assert.equal(won.length, 1, `round ${round}: ${won.length} puts succeeded`);
            for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof ObjectExistsError, String(r.reason));
            assert.deepEqual(await t.get(key), bodies[won[0]!]);
          }
          assert.equal((await keys(t, '')).length, 5);
        }));
    });

    describe('keys', () => {
      const invalid = ['/abs', 'a/../b', '../b', '..', 'a/./b', '.', 'a//b', 'a/', 'trailing/slash/', ''];
      for (const key of invalid) {
        test(`${JSON.stringify(key)} is rejected by every method and stores nothing`, () =>
          withTarget(async (t) => {
            await assert.rejects(t.put(key, Buffer.from('x')), 'put');
            await assert.rejects(t.put(key, Buffer.from('x'), { ifAbsent: true }), 'put ifAbsent');
            await assert.rejects(t.get(key), (e: unknown) => !(e instanceof ObjectMissingError), 'get');
            await assert.rejects(t.stat(key), 'stat');
            await assert.rejects(t.delete(key), 'delete');
            assert.deepEqual(await keys(t, ''), []);
          }));
      }

      test('names with dots, dashes and underscores are ordinary keys', () =>
        withTarget(async (t) => {
          const ks = ['backups/2024-01-01T00.00.00Z_ab/dev-sda.idx', 'config', '.hidden/x', 'a.b/c..d'];
          for (const k of ks) await t.put(k, Buffer.from(k));
          for (const k of ks) assert.deepEqual(await t.get(k), Buffer.from(k));
          assert.deepEqual(await keys(t, ''), [...ks].sort());
        }));
    });

    test('a reader during repeated puts always sees one whole version', { timeout: 60_000 }, () =>
      withTarget(async (t) => {
        // version v: fill byte v, and its own length, so a mix of versions or a torn write shows
        const lengthOf = (v: number) => 1 * MiB + v * 4099;
        const versions = 24;
        await t.put('atomic', Buffer.alloc(lengthOf(1), 1));
        let done = false;
        const reads = { whole: 0, ranged: 0 };
        const check = (b: Buffer, what: string) => {
          const v = b[0]!;
          assert.ok(v >= 1 && v <= versions, `${what}: unexpected first byte ${v}`);
          const bad = b.findIndex((x) => x !== v);
          assert.equal(bad, -1, `${what}: version ${v} mixed with ${b[bad]} at ${bad}`);
          return v;
        };
        const reader = async () => {
          try {
            await readUntilDone();
          } finally {
            done = true; // a failed check stops the writer too, before the target is cleaned up
          }
        };
        const readUntilDone = async () => {
          while (!done) {
            const whole = await t.get('atomic');
            assert.equal(whole.length, lengthOf(check(whole, 'whole read')), 'whole read has the length of its version');
            reads.whole++;
            const part = await t.get('atomic', { offset: 1000, length: 64 * 1024 });
            assert.equal(part.length, 64 * 1024);
            check(part, 'ranged read');
            reads.ranged++;
          }
        };
        const writer = async () => {
          try {
            for (let v = 2; v <= versions && !done; v++) {
              const len = lengthOf(v);
              // in parts, so that a target writing part by part would expose a torn object
              await t.put('atomic', [Buffer.alloc(len >> 1, v), Buffer.alloc(len - (len >> 1), v)]);
            }
          } finally {
            done = true;
          }
        };
        const results = await Promise.allSettled([writer(), reader(), reader()]);
        for (const r of results) if (r.status === 'rejected') throw r.reason;
        assert.ok(reads.whole > 0 && reads.ranged > 0, 'the readers did read');
        assert.deepEqual(await t.get('atomic'), Buffer.alloc(lengthOf(versions), versions));
      }));

    test('removeLeftovers, when the target has it, finds nothing after clean puts and keeps objects', () =>
      withTarget(async (t) => {
        if (!t.removeLeftovers) return;
        await t.put('lo/a', randomBytes(1000));
        await t.put('lo/b', [randomBytes(10), randomBytes(20)]);
        // failed puts must not leave anything behind either
        await assert.rejects(t.put('lo/a', Buffer.from('no'), { ifAbsent: true }), ObjectExistsError);
        await Promise.allSettled(Array.from({ length: 4 }, () => t.put('lo/c', Buffer.from('race'), { ifAbsent: true })));
        await assert.rejects(t.put('bad//key', Buffer.from('x')));
        assert.equal(await t.removeLeftovers(true), 0);
        assert.equal(await t.removeLeftovers(false), 0);
        assert.deepEqual(await keys(t, 'lo/'), ['lo/a', 'lo/b', 'lo/c']);
        assert.equal((await t.get('lo/b')).length, 30);
      }));
  });
  const unknown = Object.keys(knownBugs).filter((k) => !used.has(k));
  if (unknown.length) throw new Error(`knownBugs names no test of the suite: ${unknown.join(', ')}`);
}
