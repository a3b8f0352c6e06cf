/** abi.ts against the C compiler's layout of the header (native/abi-dump.c), and encoder round trips. */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as abi from '../support/blksnap/kernel-abi.js';
import { ROOT, tempDir } from '../support/env.js';

interface Dump {
  structs: Record<string, { size: number; fields: Record<string, number> }>;
  ioctls: Record<string, number>;
}

describe('ABI matches the C header', () => {
  const tmp = tempDir('bkp-abi-');
  after(() => tmp.cleanup());
  const exe = join(tmp.dir, 'abi-dump');
  execFileSync('cc', ['-Wall', '-Werror', '-o', exe, join(ROOT, 'native', 'abi-dump.c')]);
  const dump = JSON.parse(execFileSync(exe, { encoding: 'utf8' })) as Dump;

  test('every struct and field is covered, with the same size and offsets', () => {
    const seen = new Set<string>();
    for (const [key, cName] of Object.entries(abi.C_STRUCT) as Array<[keyof typeof abi.SIZE, string]>) {
      const c = dump.structs[cName];
      assert.ok(c, `${cName} in the dump`);
      seen.add(cName);
      assert.equal(abi.SIZE[key], c.size, `sizeof ${cName}`);
      assert.deepEqual(abi.OFFSET[key], c.fields, `offsets of ${cName}`);
    }
    assert.deepEqual([...seen].sort(), Object.keys(dump.structs).sort(), 'no struct left unchecked');
  });

  test('the 12 ioctl numbers', () => {
    assert.equal(Object.keys(dump.ioctls).length, 12);
    for (const [cName, value] of Object.entries(dump.ioctls)) {
      const name = cName.replace(/^IOCTL_BLK_SNAP_/, '') as abi.IoctlName;
      assert.equal(abi.IOCTL[name], value, `${cName} = 0x${value.toString(16)}`);
    }
    assert.equal(Object.keys(abi.IOCTL).length, 12);
  });

  test('the numbers quoted in the doc', () => {
    assert.equal(abi.IOCTL.VERSION, 0x40085600);
    assert.equal(abi.IOCTL.TRACKER_COLLECT, 0x40105602);
    assert.equal(abi.IOCTL.TRACKER_READ_CBT_MAP, 0x80185603);
    assert.equal(abi.IOCTL.SNAPSHOT_CREATE, 0x40205605);
    assert.equal(abi.IOCTL.SNAPSHOT_APPEND_STORAGE, 0x40285607);
    assert.equal(abi.IOCTL.SNAPSHOT_TAKE, 0x80105608);
    assert.equal(abi.IOCTL.SNAPSHOT_WAIT_EVENT, 0x5000560b);
  });
});

describe('encoders', () => {
  const id = '00112233445566778899aabbccddeeff';
  const dev = { major: 7, minor: 3 };

  test('version', () => {
    const v = { major: 1, minor: 2, revision: 3, build: 4 };
    const b = abi.encodeVersion(v);
    assert.equal(b.toString('hex'), '0100020003000400');
    assert.deepEqual(abi.decodeVersion(b), v);
  });

  test('cbt_info array: fields at their offsets, tail padding zero', () => {
    const infos: abi.CbtInfo[] = [
      { dev, blkSize: 65536, deviceCapacity: 2 ** 40 + 512, blkCount: 16384, generationId: id, snapNumber: 255 },
      { dev: { major: 259, minor: 1 }, blkSize: 131072, deviceCapacity: 1, blkCount: 1, generationId: 'ff'.repeat(16), snapNumber: 1 },
    ];
    const b = abi.encodeCbtInfos(infos);
    assert.equal(b.length, 96);
    assert.equal(b.readUInt32LE(0), 7);
    assert.equal(b.readUInt32LE(4), 3);
    assert.equal(b.readUInt32LE(8), 65536);
    assert.equal(b.readBigUInt64LE(16), 2n ** 40n + 512n);
    assert.equal(b.readUInt32LE(24), 16384);
    assert.equal(b.subarray(28, 44).toString('hex'), id);
    assert.equal(b[44], 255);
    assert.deepEqual([...b.subarray(45, 48)], [0, 0, 0]);
    assert.equal(b.readUInt32LE(48), 259);
    assert.deepEqual(abi.decodeCbtInfos(b, 2), infos);
  });

  test('read_cbt_bitmap, mark_dirty, block ranges', () => {
    const r = abi.encodeReadCbtBitmap({ dev, offset: 5, length: 1 << 20 });
    assert.equal(r.length, 24);
    assert.equal(r.readUInt32LE(8), 5);
    assert.equal(r.readUInt32LE(12), 1 << 20);
    assert.deepEqual(abi.decodeReadCbtBitmap(r), { dev, offset: 5, length: 1 << 20 });
    const m = abi.encodeMarkDirty(dev, 2);
    assert.equal(m.readUInt32LE(8), 2);
    assert.deepEqual(abi.decodeMarkDirty(m), { dev, count: 2 });
    const ranges = [{ sector: 2 ** 33, count: 8 }, { sector: 0, count: 1 }];
    const rb = abi.encodeBlockRanges(ranges);
    assert.equal(rb.readBigUInt64LE(0), 2n ** 33n);
    assert.equal(rb.readBigUInt64LE(8), 8n);
    assert.deepEqual(abi.decodeBlockRanges(rb, 2), ranges);
  });

  test('snapshot create, destroy/take, append storage, collect images', () => {
    const c = abi.encodeSnapshotCreate(3);
    assert.equal(c.length, 32);
    abi.setSnapshotCreateId(c, id);
    assert.equal(c.subarray(16, 32).toString('hex'), id);
    assert.deepEqual(abi.decodeSnapshotCreate(c), { count: 3, id });
    assert.equal(abi.encodeSnapshotId(id).toString('hex'), id);
    const a = abi.encodeAppendStorage(id, dev, 4);
    assert.equal(a.length, 40);
    assert.equal(a.readUInt32LE(16), 7);
    assert.equal(a.readUInt32LE(24), 4);
    assert.deepEqual(abi.decodeAppendStorage(a), { id, dev, count: 4 });
    const ci = abi.encodeCollectImages(id, 2);
    assert.equal(ci.readUInt32LE(16), 2);
    const infos = [{ orig: dev, image: { major: 252, minor: 0 } }];
    const ib = abi.encodeImageInfos(infos);
    assert.equal(ib.readUInt32LE(8), 252);
    assert.deepEqual(abi.decodeImageInfos(ib, 1), infos);
    assert.deepEqual(abi.decodeDevIds(abi.encodeDevIds([dev, { major: 8, minor: 16 }]), 2), [dev, { major: 8, minor: 16 }]);
    assert.deepEqual(abi.decodeUuids(abi.encodeUuids([id, 'ab'.repeat(16)]), 2), [id, 'ab'.repeat(16)]);
  });

  test('wait event request and both event kinds', () => {
    const w = abi.encodeWaitEvent(id, 1000);
    assert.equal(w.length, 4096);
    assert.equal(w.readUInt32LE(16), 1000);
    assert.deepEqual(abi.decodeWaitEventRequest(w), { id, timeout: 1000 });
    abi.setEventReply(w, { code: 0, kind: 'low-free-space', timeLabel: 123n, requestedSectors: 2_097_152 });
    assert.equal(w.readUInt32LE(20), 0);
    assert.equal(w.readBigInt64LE(24), 123n);
    assert.equal(w.readBigUInt64LE(32), 2_097_152n);
    assert.deepEqual(abi.decodeEvent(w), { code: 0, kind: 'low-free-space', timeLabel: 123n, requestedSectors: 2_097_152 });
    abi.setEventReply(w, { code: 1, kind: 'corrupted', timeLabel: -1n, dev, errCode: 28 });
    assert.equal(w.readUInt32LE(20), 1);
    assert.equal(w.readUInt32LE(32), 7);
    assert.equal(w.readUInt32LE(36), 3);
    assert.equal(w.readInt32LE(40), 28);
    assert.deepEqual(abi.decodeEvent(w), { code: 1, kind: 'corrupted', timeLabel: -1n, dev, errCode: 28 });
    w.writeUInt32LE(7, 20);
    assert.equal(abi.decodeEvent(w).kind, 'unknown');
  });

  test('bad uuids and oversized u64 are refused', () => {
    assert.throws(() => abi.encodeSnapshotId('xyz'));
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(2n ** 60n, 0);
    assert.throws(() => abi.decodeBlockRanges(b, 1), RangeError);
  });
});
