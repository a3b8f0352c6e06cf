import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { mulberry32, fuzzSeed } from '../support/random.js';
import {
  decodeEnvelopeHeader,
  encodeEnvelopeHeader,
  ENVELOPE_HEADER_SIZE,
  EnvelopeError,
  FLAG_ENCRYPTED,
  FLAG_ZSTD,
  MAX_CHUNK_SIZE,
  openEnvelope,
} from '../../src/repo/envelope.js';

function idOf(plain: Uint8Array): Buffer {
  return createHash('sha256').update(plain).digest();
}

/** A whole envelope: header then payload, as a pack holds it. */
function envelope(plain: Buffer, flags = 0, payload: Buffer = plain): Buffer {
  return Buffer.concat([encodeEnvelopeHeader(idOf(plain), flags, plain.length, payload), payload]);
}

/** Recomputes the CRC as docs/format.md defines it (bytes 0..15, 20..55, payload), so that a structural change is all that is wrong. */
function reseal(env: Buffer): Buffer {
  const b = Buffer.from(env);
  let c = crc32(b.subarray(0, 16));
  c = crc32(b.subarray(20, ENVELOPE_HEADER_SIZE), c);
  c = crc32(b.subarray(ENVELOPE_HEADER_SIZE), c);
  b.writeUInt32LE(c, 16);
  return b;
}


const SEED = fuzzSeed();

describe('chunk envelope', () => {
  describe('round trip', () => {
    test('a stored chunk comes back with its header fields and payload', () => {
      const plain = randomBytes(1000);
      const { header, payload } = openEnvelope(envelope(plain));
      assert.equal(header.flags, 0);
      assert.equal(header.plainLength, 1000);
      assert.equal(header.payloadLength, 1000);
      assert.deepEqual(header.id, idOf(plain));
      assert.deepEqual(payload, plain);
    });

    test('a compressed chunk keeps plain and payload lengths apart', () => {
      const plain = Buffer.alloc(4096, 'a');
      const fakeZstd = randomBytes(37); // the envelope does not decompress: any payload will do
      const { header, payload } = openEnvelope(envelope(plain, FLAG_ZSTD, fakeZstd));
      assert.equal(header.flags, FLAG_ZSTD);
      assert.equal(header.plainLength, 4096);
      assert.equal(header.payloadLength, 37);
      assert.deepEqual(payload, fakeZstd);
    });

    test('an empty chunk round-trips', () => {
      const { header, payload } = openEnvelope(envelope(Buffer.alloc(0)));
      assert.equal(header.plainLength, 0);
      assert.equal(payload.length, 0);
    });

    test('an envelope read as a slice of a bigger buffer (a pack range) opens', () => {
      const a = envelope(randomBytes(300));
      const b = envelope(randomBytes(77), FLAG_ZSTD, randomBytes(20));
      const pack = Buffer.concat([randomBytes(13), a, b, randomBytes(5)]);
      const viewA = new Uint8Array(pack.buffer, pack.byteOffset + 13, a.length);
      const viewB = pack.subarray(13 + a.length, 13 + a.length + b.length);
      assert.deepEqual(openEnvelope(viewA).payload, a.subarray(ENVELOPE_HEADER_SIZE));
      assert.deepEqual(openEnvelope(viewB).payload, b.subarray(ENVELOPE_HEADER_SIZE));
      assert.deepEqual(decodeEnvelopeHeader(viewB).id, b.subarray(24, 56));
    });

    test('the header alone decodes (for reading lengths before the payload)', () => {
      const plain = randomBytes(500);
      const env = envelope(plain);
      const h = decodeEnvelopeHeader(env.subarray(0, ENVELOPE_HEADER_SIZE));
      assert.equal(h.payloadLength, 500);
      assert.deepEqual(h.id, idOf(plain));
    });

    test('the returned id does not alias the input buffer', () => {
      const env = envelope(randomBytes(10));
      const { header } = openEnvelope(env);
      const id = Buffer.from(header.id);
      env.fill(0);
      assert.deepEqual(header.id, id);
    });

    test('encoding refuses an id that is not 32 bytes', () => {
      assert.throws(() => encodeEnvelopeHeader(Buffer.alloc(31), 0, 1, Buffer.alloc(1)));
      assert.throws(() => encodeEnvelopeHeader(Buffer.alloc(33), 0, 1, Buffer.alloc(1)));
    });
  });

  describe('damage is refused with EnvelopeError', () => {
    const small = envelope(Buffer.from('a small chunk of forty bytes exactly!!!!'));

    test('every single-bit flip anywhere in a small envelope', () => {
      assert.doesNotThrow(() => openEnvelope(small));
      for (let i = 0; i < small.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const b = Buffer.from(small);
          b[i]! ^= 1 << bit;
          assert.throws(() => openEnvelope(b), EnvelopeError, `byte ${i} bit ${bit}`);
        }
      }
    });

    test('every byte replaced by its complement', () => {
      for (let i = 0; i < small.length; i++) {
        const b = Buffer.from(small);
        b[i] = ~b[i]! & 0xff;
        assert.throws(() => openEnvelope(b), EnvelopeError, `byte ${i}`);
      }
    });

    test('a bit flipped in the payload of a large chunk', () => {
      const env = envelope(randomBytes(256 * 1024));
      env[ENVELOPE_HEADER_SIZE + 200_000]! ^= 0x10;
      assert.throws(() => openEnvelope(env), /checksum/);
    });

    test('truncation at every length, and extra bytes', () => {
      for (let n = 0; n < small.length; n++) assert.throws(() => openEnvelope(small.subarray(0, n)), EnvelopeError, `${n} bytes`);
      assert.throws(() => openEnvelope(Buffer.concat([small, Buffer.alloc(1)])), EnvelopeError);
      for (let n = 0; n < ENVELOPE_HEADER_SIZE; n++) assert.throws(() => decodeEnvelopeHeader(small.subarray(0, n)), EnvelopeError);
    });

    // the following carry a correct CRC: the structure itself must be checked
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['wrong magic', (b) => b.write('BKPX', 0, 'latin1'), /magic/],
      ['version 0', (b) => b.writeUInt8(0, 4), /version/],
      ['version 2', (b) => b.writeUInt8(2, 4), /version/],
      ['unknown flag 0x04', (b) => b.writeUInt8(0x04, 5), /flags/],
      ['unknown flag 0x80 with zstd', (b) => b.writeUInt8(0x81, 5), /flags/],
      ['stored chunk whose plain length differs from its payload', (b) => b.writeUInt32LE(41, 8), /length/],
      ['payload length larger than the bytes there', (b) => { b.writeUInt8(FLAG_ZSTD, 5); b.writeUInt32LE(41, 12); }, /length/],
      ['payload length smaller than the bytes there', (b) => { b.writeUInt8(FLAG_ZSTD, 5); b.writeUInt32LE(39, 12); }, /length/],
      ['plain length over the 64 MiB limit', (b) => { b.writeUInt8(FLAG_ZSTD, 5); b.writeUInt32LE(MAX_CHUNK_SIZE + 1, 8); }, /range/],
      ['payload length near 4 GiB', (b) => { b.writeUInt8(FLAG_ZSTD, 5); b.writeUInt32LE(0xffffffff, 12); }, /range/],
    ];
    for (const [what, damage, why] of cases) {
      test(`${what} (with a correct CRC)`, () => {
        const b = Buffer.from(small);
        damage(b);
        assert.throws(() => openEnvelope(reseal(b)), (e: unknown) => e instanceof EnvelopeError && why.test(e.message));
      });
    }

    test('an encrypted chunk is refused by this version, not misread', () => {
      const plain = randomBytes(64);
      const env = envelope(plain, FLAG_ENCRYPTED | FLAG_ZSTD, randomBytes(80));
      assert.throws(() => openEnvelope(env), /encrypted/);
      assert.throws(() => openEnvelope(env), EnvelopeError);
    });

    test('a compressed chunk of the largest allowed plain length still opens', () => {
      const env = reseal(Buffer.concat([encodeEnvelopeHeader(randomBytes(32), FLAG_ZSTD, MAX_CHUNK_SIZE, Buffer.alloc(9)), Buffer.alloc(9)]));
      assert.equal(openEnvelope(env).header.plainLength, MAX_CHUNK_SIZE);
    });
  });

  test(`fuzz: 2000 mutated or random inputs give a consistent envelope or EnvelopeError (seed ${SEED}, rerun with BKP_FUZZ_SEED)`, { timeout: 20_000 }, () => {
    const rnd = mulberry32(SEED);
    const int = (n: number) => Math.floor(rnd() * n);
    const seeds = [
      envelope(Buffer.from('fuzz me')),
      envelope(randomBytesFrom(rnd, 300)),
      envelope(Buffer.alloc(200, 0), FLAG_ZSTD, randomBytesFrom(rnd, 30)),
      envelope(Buffer.alloc(0)),
    ];
    let opened = 0;
    for (let iter = 0; iter < 2000; iter++) {
      let input: Buffer;
      const mode = int(10);
      if (mode === 0) {
        input = randomBytesFrom(rnd, int(200));
      } else if (mode === 1) {
        // random bytes behind a valid magic and version reach the later checks
        input = randomBytesFrom(rnd, ENVELOPE_HEADER_SIZE + int(100));
        input.write('BKPC', 0, 'latin1');
        input[4] = 1;
        input[5] = int(4);
        if (rnd() < 0.5) input = reseal(input);
      } else {
        input = Buffer.from(seeds[int(seeds.length)]!);
        for (let m = 1 + int(4); m > 0; m--) input = mutate(input, rnd);
        if (rnd() < 0.5 && input.length >= ENVELOPE_HEADER_SIZE) input = reseal(input);
      }
      let result: ReturnType<typeof openEnvelope>;
      try {
        result = openEnvelope(input);
      } catch (e) {
        assert.ok(e instanceof EnvelopeError, `iteration ${iter}: ${String(e)} for ${input.toString('hex')}`);
        continue;
      }
      opened++;
      const { header, payload } = result;
      assert.equal(input.length, ENVELOPE_HEADER_SIZE + header.payloadLength, `iteration ${iter}`);
      assert.equal(payload.length, header.payloadLength);
      assert.deepEqual(payload, input.subarray(ENVELOPE_HEADER_SIZE));
      assert.equal(header.flags & ~FLAG_ZSTD, 0);
      if (!(header.flags & FLAG_ZSTD)) assert.equal(header.plainLength, header.payloadLength);
      assert.ok(header.plainLength <= MAX_CHUNK_SIZE);
      assert.deepEqual(header.id, input.subarray(24, 56));
      assert.equal(header.crc, reseal(input).readUInt32LE(16), 'only envelopes with the right CRC open');
    }
    assert.ok(opened > 0, 'some resealed inputs are valid envelopes (the fuzz reached past the checks)');
  });
});

function randomBytesFrom(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** One random damage: flip a bit, set a byte, cut, extend, or overwrite a little-endian length-like field. */
function mutate(b: Buffer, rnd: () => number): Buffer {
  const int = (n: number) => Math.floor(rnd() * n);
  if (b.length === 0) return randomBytesFrom(rnd, int(8));
  switch (int(6)) {
    case 0: { const c = Buffer.from(b); c[int(c.length)]! ^= 1 << int(8); return c; }
    case 1: { const c = Buffer.from(b); c[int(c.length)] = int(256); return c; }
    case 2: return b.subarray(0, int(b.length));
    case 3: return Buffer.concat([b, randomBytesFrom(rnd, 1 + int(16))]);
    case 4: {
      const c = Buffer.from(b);
      const o = int(Math.max(1, c.length - 4));
      if (o + 4 <= c.length) c.writeUInt32LE([0, 1, 0xffffffff, int(2 ** 32), c.length, c.length - ENVELOPE_HEADER_SIZE][int(6)]! >>> 0, o);
      return c;
    }
    default: { const c = Buffer.from(b); if (c.length < 16) return c; c.writeUInt32LE(int(2 ** 32) >>> 0, [8, 12][int(2)]!); return c; }
  }
}
