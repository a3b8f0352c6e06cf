#!/usr/bin/env bash
# The incremental benchmark (bench/incr.mjs) against the real blksnap module, in the kernel lab's
# VM (build the lab once: bash ../shared/tools/kernel-lab/setup.sh; npm run build first). The
# device, the repository and the difference storage are on an ext4 made on the guest's /dev/vdb.
# Prints the table (CBT-marked bytes, bytes read and stored, incr time against the full's in the
# same guest) and keeps the figures in bench/out/real-incr/results.json.
# usage: bash bench/real-incr.sh [ARGS for bench/incr.mjs]   (default: --size 128M --chunk-sizes 1M)
# Emulated CPUs are several times slower than the host: compare ratios within the guest.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/kernel-lab.sh"
args=("$@"); ((${#args[@]})) || args=(--size 128M --chunk-sizes 1M)
q=$(printf ' %q' "${args[@]}")
GUEST_TIMEOUT=${GUEST_TIMEOUT:-1800} bash "$KERNEL_LAB/run-in-guest.sh" "
set -e
# the lab's /proc and /sys collide (the 9p root gives both one inode; /sys is what works): the
# bench drops caches through a proc mounted elsewhere
mkdir -p /tmp/proc && mount -t proc proc /tmp/proc
export BKP_BENCH_DROP_CACHES=/tmp/proc/sys/vm/drop_caches
mkfs.ext4 -q -F /dev/vdb && mkdir -p /tmp/t && mount /dev/vdb /tmp/t
cd $root
node bench/incr.mjs --blksnap real --dir /tmp/t/incr$q
cp /tmp/t/incr/results.json /mnt/real-incr-results.json
"
rc=$?
if [ -f "$LAB_DIR/share/real-incr-results.json" ]; then
  mkdir -p "$root/bench/out/real-incr"
  mv "$LAB_DIR/share/real-incr-results.json" "$root/bench/out/real-incr/results.json"
fi
exit $rc
