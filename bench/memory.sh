#!/usr/bin/env bash
# Peak RSS of bkp against the number of chunks of a device: `bash bench/memory.sh [SIZE...]`
# (default 4G 16G). For each size: a sparse image file with 1 MiB of random data every 16 MiB
# (enough data that the fixed buffers — packs being filled and stored, reads in flight — are full
# at every size, so that what grows is what depends on the number of chunks),
# a repository with 64 KiB chunks (so that 16G is 262,144 chunks, as many as 256 GiB at the
# default 1 MiB), then full, a digest incremental after one changed MiB, restore to an image file
# (compared with cmp) and verify, each timed by /usr/bin/time. The last lines give the growth per
# chunk between the smallest and the largest size. Needs ~2x the largest size of sparse disk
# space only; runs from the checkout it lives in (build it first: npm ci).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bkp="node $here/bin/bkp.js"
sizes=("$@")
((${#sizes[@]})) || sizes=(4G 16G)
work=$(mktemp -d "${TMPDIR:-/tmp}/bkp-bench-memory-XXXXXX")
trap 'rm -rf "$work"' EXIT
declare -A rss

echo "| device | chunks | full MiB | incr MiB | restore MiB | verify MiB |"
echo "|---|---:|---:|---:|---:|---:|"
for size in "${sizes[@]}"; do
  d="$work/$size"
  mkdir -p "$d"
  bytes=$(numfmt --from=iec "$size")
  truncate -s "$bytes" "$d/dev.img"
  for ((mib = 0; mib < bytes / 1048576; mib += 16)); do
    dd if=/dev/urandom of="$d/dev.img" bs=1M count=1 seek=$mib conv=notrunc status=none
  done
  $bkp init --repo "$d/repo" --chunk-size 64K --quiet
  peak() { # command... → peak RSS in MiB
    /usr/bin/time -f %M -o "$d/time" "$@" >/dev/null 2>"$d/err" || { cat "$d/err" >&2; exit 1; }
    echo $(($(cat "$d/time") / 1024))
  }
  full=$(peak $bkp full --repo "$d/repo" --device "$d/dev.img" --no-snapshot --quiet)
  dd if=/dev/urandom of="$d/dev.img" bs=1M count=1 seek=5 conv=notrunc status=none
  incr=$(peak $bkp incr --repo "$d/repo" --device "$d/dev.img" --no-snapshot --quiet)
  restore=$(peak $bkp restore --repo "$d/repo" --to "$d/out.img" --quiet)
  cmp "$d/dev.img" "$d/out.img" || { echo "restore of $size differs" >&2; exit 1; }
  verify=$(peak $bkp verify --repo "$d/repo" --quiet)
  chunks=$((bytes / 65536))
  rss[$size]="$chunks $full $incr $restore $verify"
  echo "| $size | $chunks | $full | $incr | $restore | $verify |"
  rm -rf "$d"
done
if ((${#sizes[@]} > 1)); then
  read -r c0 f0 i0 r0 v0 <<<"${rss[${sizes[0]}]}"
  read -r c1 f1 i1 r1 v1 <<<"${rss[${sizes[-1]}]}"
  per() { echo $(((($2 - $1) * 1048576) / (c1 - c0))); }
  echo
  echo "growth per chunk from ${sizes[0]} to ${sizes[-1]} (bytes of peak RSS): full $(per "$f0" "$f1"), incr $(per "$i0" "$i1"), restore $(per "$r0" "$r1"), verify $(per "$v0" "$v1")"
fi
