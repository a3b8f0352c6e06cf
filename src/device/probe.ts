/**
 * What a device or image already holds: filesystem, partition table, swap, LUKS, LVM.
 * Reads only the first 68 KiB; used to refuse restoring over data without --force and to record
 * the filesystem UUID in the backup index.
 */

export interface Signature {
  type: string;
  uuid: string | null;
}

export const PROBE_BYTES = 68 * 1024;

function uuidAt(b: Buffer, o: number): string | null {
  if (b.length < o + 16) return null;
  const h = b.toString('hex', o, o + 16);
  if (/^0+$/.test(h)) return null;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function at(b: Buffer, o: number, s: string): boolean {
  return b.length >= o + s.length && b.toString('latin1', o, o + s.length) === s;
}

/** Identifies the first signature found in the first PROBE_BYTES of a device (null if none). */
export function probeSignature(b: Buffer): Signature | null {
  if (b.length >= 1082 && b.readUInt16LE(1080) === 0xef53) {
    const compat = b.readUInt32LE(1024 + 0x5c);
    const incompat = b.readUInt32LE(1024 + 0x60);
    const type = incompat & 0x40 ? 'ext4' : compat & 0x4 ? 'ext3' : 'ext2';
    return { type, uuid: uuidAt(b, 1024 + 0x68) };
  }
  if (at(b, 0, 'XFSB')) return { type: 'xfs', uuid: uuidAt(b, 32) };
  if (at(b, 65536 + 0x40, '_BHRfS_M')) return { type: 'btrfs', uuid: uuidAt(b, 65536 + 0x20) };
  if (at(b, 0, 'LUKS\xba\xbe')) return { type: 'crypto_LUKS', uuid: b.toString('latin1', 168, 208).replace(/\0.*$/, '') || null };
  if (at(b, 4086, 'SWAPSPACE2') || at(b, 4086, 'SWAP-SPACE')) return { type: 'swap', uuid: uuidAt(b, 1024 + 12) };
  if (at(b, 536, 'LVM2 001')) return { type: 'LVM2_member', uuid: null };
  if (at(b, 512, 'EFI PART')) return { type: 'gpt', uuid: null };
  if (at(b, 3, 'NTFS    ')) return { type: 'ntfs', uuid: null };
  if (at(b, 82, 'FAT32   ') || at(b, 54, 'FAT12   ') || at(b, 54, 'FAT16   ')) return { type: 'vfat', uuid: null };
  if (b.length >= 512 && b.readUInt16LE(510) === 0xaa55) {
    // an MBR with at least one partition entry in use
    for (let i = 0; i < 4; i++) if (b.readUInt8(446 + i * 16 + 4) !== 0) return { type: 'dos', uuid: null };
  }
  return null;
}
