#!/usr/bin/env python3
"""Restore one device of one bkp backup, written only from docs/format.md (format v1).

    python3 tools/bkp-restore-by-hand.py REPO_DIR BACKUP_ID DEVICE OUTPUT_FILE
    python3 tools/bkp-restore-by-hand.py --device-key PATH

DEVICE is a device key, or a path containing '/' that is turned into its key (section 3).
Reads backups/BACKUP_ID/<device key>.idx, checks its SHA-256, and writes the device image to
OUTPUT_FILE (a new sparse file: zero chunks become holes), checking every envelope's CRC-32 and
every chunk's SHA-256. Needs only the Python 3 standard library and the `zstd` command.
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
    if version != 1 or flags != 0:
        raise Damaged(f'{path}: unsupported index version {version} / flags {flags:#x}')
    body = b[:-32]
    if hashlib.sha256(body).digest() != b[-32:]:
        raise Damaged(f'{path}: index SHA-256 mismatch')
    h = u32(b, 8)
    header = json.loads(body[12:12 + h].decode('utf-8'))
    if header.get('formatVersion') != 1:
        raise Damaged(f'{path}: unsupported header formatVersion {header.get("formatVersion")}')
    size, chunk = header['device']['size'], header['chunkSize']
    o = 12 + h
    p = u32(body, o)
    o += 4
    packs = [body[o + 16 * k:o + 16 * k + 16].hex() for k in range(p)]
    o += 16 * p
    n = u32(body, o)
    o += 4
    if n != math.ceil(size / chunk) or len(body) - o != 56 * n:
        raise Damaged(f'{path}: entry table does not match the device size')
    entries = []
    for i in range(n):
        kind, reserved, ordinal, offset, length, plain = struct.unpack_from('<B3sIQII', body, o)
        chunk_id = body[o + 24:o + 56]
        o += 56
        if kind not in (0, 1) or reserved != b'\0\0\0' or plain != min(chunk, size - i * chunk) or (kind == 1 and ordinal >= p):
            raise Damaged(f'{path}: entry {i} is invalid')
        entries.append((kind, ordinal, offset, length, plain, chunk_id))
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
    size, chunk = header['device']['size'], header['chunkSize']
    pack_files = {}
    with open(out_path, 'xb') as out:
        out.truncate(size)  # a sparse file of the device size: zero chunks stay holes
        for i, (kind, ordinal, offset, length, plain, chunk_id) in enumerate(entries):
            if kind == 0:
                continue
            pid = packs[ordinal]
            if pid not in pack_files:
                pack_files[pid] = open(os.path.join(repo, 'packs', pid[:2], pid + '.pack'), 'rb')
            f = pack_files[pid]
            f.seek(offset)
            try:
                data = open_envelope(f.read(length), chunk_id, plain)
            except Damaged as e:
                raise Damaged(f'chunk {i} (device bytes {i * chunk}-{i * chunk + plain - 1}) in pack {pid}: {e}')
            out.seek(i * chunk)
            out.write(data)
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
