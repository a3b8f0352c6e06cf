import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { encodeEnvelopeHeader, openEnvelope } from '../../src/repo/envelope.js';
import { mulberry32, fuzzSeed } from '../support/random.js';
import {
  decodePackEntries,
  decodePackFooter,
  encodePackTrailer,
  newPackId,
  PACK_ENTRY_SIZE,
  PACK_FOOTER_SIZE,
  PackFormatError,
  packIdFromKey,
  packKey,
  type PackEntry,
} from '../../src/repo/pack.js';

interface Pack {
  bytes: Buffer;
  entries: PackEntry[];
}

/** A pack as the writer makes it: envelopes back to back, then the trailer. */
function buildPack(plains: Buffer[]): Pack {
  const parts: Buffer[] = [];
  const entries: PackEntry[] = [];
  let offset = 0;
  for (const plain of plains) {
    const id = createHash('sha256').update(plain).digest();
    const env = Buffer.concat([encodeEnvelopeHeader(id, 0, plain.length, plain), plain]);
    parts.push(env);
    entries.push({ id, offset, length: env.length, plainLength: plain.length });
    offset += env.length;
  }
  parts.push(encodePackTrailer(entries));
  return { bytes: Buffer.concat(parts), entries };
}

/** How a reader finds the entries: footer from the last 16 bytes, then count x 48 bytes before it. */
function readTrailer(pack: Buffer): PackEntry[] {
  const footer = decodePackFooter(pack.subarray(Math.max(0, pack.length - PACK_FOOTER_SIZE)));
  const end = pack.length - PACK_FOOTER_SIZE;
  const entries = pack.subarray(Math.max(0, end - footer.count * PACK_ENTRY_SIZE), end);
  return decodePackEntries(entries, footer, pack.length);
}

/** Recomputes the footer CRC over the entries, so that only the structural damage is wrong. */
function resealTrailer(pack: Buffer, count: number): Buffer {
  const b = Buffer.from(pack);
  const f = b.length - PACK_FOOTER_SIZE;
  b.writeUInt32LE(crc32(b.subarray(f - count * PACK_ENTRY_SIZE, f)), f + 8);
  return b;
}


const SEED = fuzzSeed();

describe('pack', () => {
  describe('keys and ids', () => {
    test('new pack ids are 32 hex digits and distinct', () => {
      const ids = new Set(Array.from({ length: 1000 }, newPackId));
      assert.equal(ids.size, 1000);
      for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
    });

    test('packKey and packIdFromKey round-trip', () => {
      for (let i = 0; i < 100; i++) {
        const id = newPackId();
        const key = packKey(id);
        assert.equal(key, `packs/${id.slice(0, 2)}/${id}.pack`);
        assert.equal(packIdFromKey(key), id);
      }
    });

    test('packIdFromKey refuses keys that are not packs', () => {
      const id = 'ab' + '0'.repeat(30);
      for (const key of [
        `packs/cd/${id}.pack`, // wrong fan-out directory
        `packs/ab/${id}`,
        `packs/ab/${id}.pack.tmp`,
        `packs/AB/${id.toUpperCase()}.pack`,
        `packs/ab/${id}0.pack`,
        `packs/ab/${id.slice(1)}.pack`,
        `x/packs/ab/${id}.pack`,
        `packs/${id}.pack`,
        'packs/ab/.tmp-0123456789abcdef',
        'config',
      ]) {
        assert.equal(packIdFromKey(key), undefined, key);
      }
    });
  });

  describe('round trip', () => {
    test('the trailer lists every envelope, each of which opens to its chunk', () => {
      const plains = [randomBytes(1000), Buffer.alloc(0), randomBytes(1), randomBytes(70_000)];
      const pack = buildPack(plains);
      const got = readTrailer(pack.bytes);
      assert.deepEqual(got, pack.entries);
      got.forEach((e, i) => {
        const { header, payload } = openEnvelope(pack.bytes.subarray(e.offset, e.offset + e.length));
        assert.deepEqual(header.id, e.id);
        assert.deepEqual(payload, plains[i]);
      });
    });

    test('an empty pack is just a footer with no entries', () => {
      const pack = buildPack([]);
      assert.equal(pack.bytes.length, PACK_FOOTER_SIZE);
      assert.deepEqual(readTrailer(pack.bytes), []);
    });

    test('offsets beyond 4 GiB survive (u64)', () => {
      const e: PackEntry = { id: randomBytes(32), offset: 5 * 2 ** 32 + 17, length: 1000, plainLength: 944 };
      const trailer = encodePackTrailer([e]);
      const footer = decodePackFooter(trailer.subarray(PACK_ENTRY_SIZE));
      const packSize = e.offset + e.length + trailer.length;
      assert.deepEqual(decodePackEntries(trailer.subarray(0, PACK_ENTRY_SIZE), footer, packSize), [e]);
    });

    test('an entry ending exactly where the trailer starts is accepted', () => {
      const pack = buildPack([randomBytes(10), randomBytes(20)]);
      const last = readTrailer(pack.bytes).at(-1)!;
      assert.equal(last.offset + last.length, pack.bytes.length - 2 * PACK_ENTRY_SIZE - PACK_FOOTER_SIZE);
    });
  });

  describe('damage is refused with PackFormatError', () => {
    const pack = buildPack([Buffer.from('one'), Buffer.from('two two'), Buffer.from('three three three')]);
    const n = pack.entries.length;
    const footerAt = pack.bytes.length - PACK_FOOTER_SIZE;
    const trailerAt = footerAt - n * PACK_ENTRY_SIZE;

    test('a footer of the wrong size', () => {
      for (const len of [0, 1, 15, 17, 32]) {
        assert.throws(() => decodePackFooter(Buffer.alloc(len)), PackFormatError, `${len} bytes`);
      }
    });

    test('wrong magic or version', () => {
      for (const [at, byte] of [[12, 0x58], [15, 0x00], [4, 0], [4, 2], [4, 0xff]] as const) {
        const b = Buffer.from(pack.bytes);
        b[footerAt + at] = byte;
        assert.throws(() => readTrailer(b), PackFormatError, `footer byte ${at} = ${byte}`);
      }
    });

    test('an entry count that disagrees with the trailer', () => {
      for (const count of [n - 1, n + 1, 0, 0xffffffff]) {
        const b = Buffer.from(pack.bytes);
        b.writeUInt32LE(count, footerAt);
        assert.throws(() => readTrailer(b), PackFormatError, `count ${count}`);
        // the caller may also hand over the real entries with a lying count
        const footer = decodePackFooter(b.subarray(footerAt));
        assert.throws(() => decodePackEntries(b.subarray(trailerAt, footerAt), footer, b.length), PackFormatError);
      }
    });

    test('a bad trailer CRC, or any bit flipped in the entries', () => {
      const badCrc = Buffer.from(pack.bytes);
      badCrc[footerAt + 8]! ^= 1;
      assert.throws(() => readTrailer(badCrc), /checksum/);
      for (let i = trailerAt; i < footerAt; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const b = Buffer.from(pack.bytes);
          b[i]! ^= 1 << bit;
          assert.throws(() => readTrailer(b), PackFormatError, `trailer byte ${i - trailerAt} bit ${bit}`);
        }
      }
    });

    test('every bit flip in the footer is refused or changes nothing', () => {
      for (let i = footerAt; i < pack.bytes.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const b = Buffer.from(pack.bytes);
          b[i]! ^= 1 << bit;
          let got: PackEntry[];
          try {
            got = readTrailer(b);
          } catch (e) {
            assert.ok(e instanceof PackFormatError, `footer byte ${i - footerAt}: ${String(e)}`);
            continue;
          }
          // only the reserved bytes may be ignored, and then the entries are the true ones
          assert.ok([5, 6, 7].includes(i - footerAt), `footer byte ${i - footerAt} bit ${bit} accepted`);
          assert.deepEqual(got, pack.entries);
        }
      }
    });

    test('entries pointing past the data (with a correct CRC)', () => {
      const cases: Array<[string, (e: PackEntry[]) => void]> = [
        ['length one too long', (e) => { e[n - 1]!.length += 1; }],
        ['offset one too far', (e) => { e[n - 1]!.offset += 1; }],
        ['offset into the trailer', (e) => { e[0]!.offset = trailerAt; e[0]!.length = 1; }],
        ['offset past the end', (e) => { e[0]!.offset = pack.bytes.length + 100; e[0]!.length = 0; }],
        ['huge offset', (e) => { e[1]!.offset = 2 ** 53; }],
        ['huge length', (e) => { e[1]!.length = 0xffffffff; }],
      ];
      for (const [what, damage] of cases) {
        const entries = pack.entries.map((e) => ({ ...e }));
        damage(entries);
        const b = Buffer.concat([pack.bytes.subarray(0, trailerAt), encodePackTrailer(entries)]);
        assert.throws(() => readTrailer(b), (e: unknown) => e instanceof PackFormatError && /past the data/.test(e.message), what);
      }
    });

    test('a pack cut short before its trailer', () => {
      // the footer is intact but the pack is smaller than the entries claim
      const trailer = pack.bytes.subarray(trailerAt);
      const footer = decodePackFooter(trailer.subarray(n * PACK_ENTRY_SIZE));
      assert.throws(() => decodePackEntries(trailer.subarray(0, n * PACK_ENTRY_SIZE), footer, trailer.length + 10), PackFormatError);
      for (let cut = 1; cut <= trailer.length; cut++) {
        assert.throws(() => readTrailer(pack.bytes.subarray(cut)), PackFormatError, `first ${cut} bytes missing`);
      }
    });

    test('a huge trailer CRC-resealed entry count is refused, not allocated', () => {
      const b = Buffer.from(pack.bytes);
      b.writeUInt32LE(0x7fffffff, footerAt);
      assert.throws(() => readTrailer(resealTrailer(b, n)), PackFormatError);
    });
  });

  test(`fuzz: 2000 mutated or random trailers decode consistently or throw PackFormatError (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, { timeout: 20_000 }, () => {
    const rnd = mulberry32(SEED);
    const int = (k: number) => Math.floor(rnd() * k);
    const bytes = (k: number) => Buffer.from(Array.from({ length: k }, () => int(256)));
    const packs = [
      buildPack([]),
      buildPack([bytes(5)]),
      buildPack(Array.from({ length: 6 }, (_, i) => bytes(i * 7))),
    ];
    let decoded = 0;
    for (let iter = 0; iter < 2000; iter++) {
      const p = packs[int(packs.length)]!;
      let b: Buffer;
      let count = p.entries.length;
      switch (int(6)) {
        case 0:
          b = bytes(int(200));
          break;
        case 1: // random entries behind a valid footer shape
          count = int(5);
          b = Buffer.concat([bytes(int(100)), bytes(count * PACK_ENTRY_SIZE), Buffer.alloc(PACK_FOOTER_SIZE)]);
          b.writeUInt32LE(count, b.length - 16);
          b[b.length - 12] = 1;
          b.write('BKPK', b.length - 4, 'latin1');
          b = resealTrailer(b, count);
          break;
        default: {
          b = Buffer.from(p.bytes);
          for (let m = 1 + int(3); m > 0 && b.length > 0; m--) {
            const r = int(4);
            if (r === 0) b[int(b.length)]! ^= 1 << int(8);
            else if (r === 1) b[int(b.length)] = int(256);
            else if (r === 2 && b.length >= 8) b.writeUInt32LE(int(2 ** 32) >>> 0, int(b.length - 3));
            else b = rnd() < 0.5 ? b.subarray(int(b.length)) : Buffer.concat([bytes(1 + int(50)), b]);
          }
          if (rnd() < 0.6 && b.length >= PACK_FOOTER_SIZE + count * PACK_ENTRY_SIZE) b = resealTrailer(b, count);
        }
      }
      let got: PackEntry[];
      try {
        got = readTrailer(b);
      } catch (e) {
        assert.ok(e instanceof PackFormatError, `iteration ${iter}: ${String(e)} for ${b.toString('hex')}`);
        continue;
      }
      decoded++;
      const footer = decodePackFooter(b.subarray(b.length - PACK_FOOTER_SIZE));
      assert.equal(got.length, footer.count, `iteration ${iter}`);
      const dataEnd = b.length - PACK_FOOTER_SIZE - got.length * PACK_ENTRY_SIZE;
      for (const e of got) {
        assert.equal(e.id.length, 32);
        assert.ok(Number.isSafeInteger(e.offset) && e.offset >= 0, `offset ${e.offset}`);
        assert.ok(Number.isInteger(e.length) && e.length >= 0);
        assert.ok(e.offset + e.length <= dataEnd, `iteration ${iter}: entry ${e.offset}+${e.length} past data end ${dataEnd}`);
      }
    }
    assert.ok(decoded > 0, 'some inputs decoded (the fuzz reached past the checks)');
  });
});
