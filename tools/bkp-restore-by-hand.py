#!/usr/bin/env python3
"""Restore one device of one bkp backup, written only from docs/format.md (format version 2).

    python3 tools/bkp-restore-by-hand.py REPO_DIR BACKUP_ID DEVICE OUTPUT_FILE
    python3 tools/bkp-restore-by-hand.py --device-key PATH

DEVICE is a device key, or a path containing '/' that is turned into its key (section 3).
Reads backups/BACKUP_ID/<device key>.idx, checks its SHA-256, and writes the device image to
OUTPUT_FILE (a new sparse file: zero bases become holes; patches are laid over their bases),
checking every envelope's CRC-32 and every chunk's SHA-256. Needs only the Python 3 standard library and the `zstd` command.
"""
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib


class Damaged(Exception):
    pass


def u32(b, o):
    return struct.unpack_from('<I', b, o)[0]


def read_ref(b, o):
    """Section 8: a ref (pack ordinal, envelope offset, envelope length, plain length, chunk id)."""
    ordinal, offset, length, plain = struct.unpack_from('<IQII', b, o)
    return ordinal, offset, length, plain, b[o + 20:o + 52]


def mask_length(mask, piece, region_length):
    """Section 8: bytes of the pieces a patch mask names."""
    return sum(min(piece, region_length - p * piece) for p in range(64) if mask >> p & 1)


def device_key(path):
    """Section 3: the device key of a device path."""
    def esc(part):
        out = ''.join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or b == 0x2e) else f'_{b:02x}'
                      for b in os.fsencode(part))
        return '_2e' + out[1:] if out.startswith('.') else out
    parts = [p for p in os.path.abspath(path).split('/') if p]
    key = '-'.join(esc(p) for p in parts) or '_'
    if len(key) > 200:
        key = key[:160] + '~' + hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:32]
    return key


def zstd_decompress(payload):
    if shutil.which('zstd'):
        return subprocess.run(['zstd', '-d', '-q', '-c'], input=payload, stdout=subprocess.PIPE, check=True).stdout
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        sys.exit('need the zstd command (apt install zstd) to decompress chunks')
    return zstd.decompress(payload)


def read_index(path):
    """Section 8: returns (header, pack ids as hex, entries)."""
    with open(path, 'rb') as f:
        b = f.read()
    if len(b) < 44 or b[0:4] != b'BKPI':
        raise Damaged(f'{path}: not a bkp index')
    version, flags = struct.unpack_from('<HH', b, 4)
    if version != 2 or flags != 0:
        raise Damaged(f'{path}: unsupported index version {version} / flags {flags:#x}')
    body = b[:-32]
    if hashlib.sha256(body).digest() != b[-32:]:
        raise Damaged(f'{path}: index SHA-256 mismatch')
    h = u32(b, 8)
    header = json.loads(body[12:12 + h].decode('utf-8'))
    if header.get('formatVersion') != 2:
        raise Damaged(f'{path}: unsupported header formatVersion {header.get("formatVersion")}')
    size, chunk, piece = header['device']['size'], header['chunkSize'], header['pieceSize']
    if not isinstance(piece, int) or piece <= 0 or not isinstance(chunk, int) or chunk <= 0 or chunk % piece != 0 or chunk // piece > 64:
        raise Damaged(f'{path}: piece size {piece} does not fit chunk size {chunk}')
    o = 12 + h
    p = u32(body, o)
    o += 4
    packs = [body[o + 16 * k:o + 16 * k + 16].hex() for k in range(p)]
    o += 16 * p
    n = u32(body, o)
    o += 4
    if n != math.ceil(size / chunk) or len(body) - o != 120 * n:
        raise Damaged(f'{path}: entry table does not match the device size')
    entries = []
    for i in range(n):
        kind, flags, reserved, region_length = struct.unpack_from('<BBHI', body, o)
        base, patch = read_ref(body, o + 8), read_ref(body, o + 60)
        mask = struct.unpack_from('<Q', body, o + 112)[0]
        o += 120
        pieces = math.ceil(region_length / piece)
        ok = kind in (0, 1) and flags in (0, 1) and reserved == 0 and region_length == min(chunk, size - i * chunk)
        if ok and kind == 1:
            ok = base[0] < p and base[3] == region_length
        if ok and flags == 1:
            ok = patch[0] < p and 0 < mask < (1 << pieces) and patch[3] == mask_length(mask, piece, region_length)
        elif ok:
            ok = mask == 0
        if not ok:
            raise Damaged(f'{path}: entry {i} is invalid')
        entries.append((kind, base, patch if flags == 1 else None, mask, region_length))
    return header, packs, entries


def open_envelope(env, chunk_id, plain_length):
    """Section 6: checks one envelope and returns the chunk's plaintext."""
    if len(env) < 56 or env[0:4] != b'BKPC' or env[4] != 1:
        raise Damaged('bad envelope magic or version')
    flags = env[5]
    if flags & ~0x01:
        raise Damaged(f'unsupported envelope flags {flags:#x}')
    plain, payload_len, crc = struct.unpack_from('<III', env, 8)
    if len(env) != 56 + payload_len or plain != plain_length or env[24:56] != chunk_id:
        raise Damaged('envelope does not match the index')
    if zlib.crc32(env[0:16] + env[20:]) != crc:
        raise Damaged('envelope CRC-32 mismatch')
    payload = env[56:]
    data = zstd_decompress(payload) if flags & 0x01 else payload
    if len(data) != plain_length or hashlib.sha256(data).digest() != chunk_id:
        raise Damaged('chunk SHA-256 mismatch')
    return data


def restore(repo, backup_id, device_key, out_path):
    header, packs, entries = read_index(os.path.join(repo, 'backups', backup_id, device_key + '.idx'))
    size, chunk, piece = header['device']['size'], header['chunkSize'], header['pieceSize']
    pack_files = {}

    def chunk_of(ref, what):
        """Section 13, step 6: one ref's chunk, checked."""
        ordinal, offset, length, plain, chunk_id = ref
        pid = packs[ordinal]
        if pid not in pack_files:
            pack_files[pid] = open(os.path.join(repo, 'packs', pid[:2], pid + '.pack'), 'rb')
        f = pack_files[pid]
        f.seek(offset)
        try:
            return open_envelope(f.read(length), chunk_id, plain)
        except Damaged as e:
            raise Damaged(f'{what} in pack {pid}: {e}')

    with open(out_path, 'xb') as out:
        out.truncate(size)  # a sparse file of the device size: zero bases stay holes
        # step 7: every base, then step 8: every patch over its base
        for i, (kind, base, _, _, region_length) in enumerate(entries):
            if kind == 1:
                out.seek(i * chunk)
                out.write(chunk_of(base, f'base of region {i} (device bytes {i * chunk}-{i * chunk + region_length - 1})'))
        for i, (_, _, patch, mask, region_length) in enumerate(entries):
            if patch is None:
                continue
            data = chunk_of(patch, f'patch of region {i} (device bytes {i * chunk}-{i * chunk + region_length - 1})')
            at = 0
            for p in range(64):
                if mask >> p & 1:
                    n = min(piece, region_length - p * piece)
                    out.seek(i * chunk + p * piece)
                    out.write(data[at:at + n])
                    at += n
    for f in pack_files.values():
        f.close()
    return header


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--device-key':
        print(device_key(sys.argv[2]))
        return
    if len(sys.argv) != 5:
        sys.exit('\n'.join(line.strip() for line in __doc__.strip().splitlines()[2:4]))
    repo, backup_id, device, out_path = sys.argv[1:]
    key = device_key(device) if '/' in device else device
    try:
        header = restore(repo, backup_id, key, out_path)
    except FileExistsError:
        sys.exit(f'{out_path} exists: refusing to overwrite it')
    except (Damaged, OSError, ValueError, KeyError) as e:
        if os.path.exists(out_path):
            os.remove(out_path)  # never leave a partial image that looks like a restore
        sys.exit(f'restore failed: {e}')
    print(f"restored {header['device']['path']} ({header['device']['size']} bytes) of backup {backup_id} to {out_path}")


if __name__ == '__main__':
    main()
