#!/usr/bin/env bash
# Runs the real-module tests in the kernel lab's VM (Debian's 6.1 kernel with the real blksnap
# module; build the lab once with bash ../shared/tools/kernel-lab/setup.sh). The checkout's
# compiled tests (npm run build first) run in the guest from the host's read-only root, with
# TMPDIR on an ext4 made on the guest's /dev/vdb, BKP_TEST_BLKSNAP_REAL=1 and no S3 server.
# usage: scripts/test-real.sh [FILTER...]   (default: every real-module test file;
#        a FILTER is a substring of a test file's path, e.g. module/chain)
# Fails when the guest cannot boot, when a test fails, or when a test was skipped: in the guest,
# nothing may silently not run. The VM is stopped after GUEST_TIMEOUT seconds (default 1800).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/kernel-lab.sh"
[ -d "$root/dist/test" ] || { echo "no compiled tests in $root/dist (run npm run build)" >&2; exit 1; }
filters=("$@"); ((${#filters[@]})) || filters=(blksnap/real.test module/)
q=$(printf ' %q' "${filters[@]}")
out=$(GUEST_TIMEOUT=${GUEST_TIMEOUT:-1800} bash "$KERNEL_LAB/run-in-guest.sh" "
set -e
# the lab's /proc and /sys collide (the 9p root gives both one inode; /sys is what works): a
# proc for the status monitor goes elsewhere
mkdir -p /tmp/proc && mount -t proc proc /tmp/proc
mkfs.ext4 -q -F /dev/vdb && mkdir -p /tmp/t && mount /dev/vdb /tmp/t
cd $root
# what the guest is doing, every 15 s, for a run that hangs (printed when the run fails)
(set +e; while sleep 15; do { date; for p in /tmp/proc/[0-9]*; do c=\$(tr '\\0' ' ' < \$p/cmdline 2>/dev/null); [ -n \"\$c\" ] && echo \"\${p#/tmp/proc/} \$(cat \$p/wchan 2>/dev/null) \$c\"; done; dmesg | tail -8; } > /mnt/guest-status.txt 2>&1; done) &
echo \"guest: \$(uname -r), blksnap \$(cat /sys/module/blksnap/version), \$(nproc) vCPUs\"
TMPDIR=/tmp/t BKP_TEST_CONCURRENCY=1 BKP_TEST_BLKSNAP_REAL=1 BKP_TEST_S3=skip BKP_TEST_BLKSNAP_MODULE=/mnt/blksnap.ko node scripts/test.mjs$q
")
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ] && [ -f "$LAB_DIR/share/guest-status.txt" ]; then echo "--- the guest at its last look:"; cat "$LAB_DIR/share/guest-status.txt"; fi
rm -f "$LAB_DIR/share/guest-status.txt"
if [ $rc -eq 0 ]; then
  skipped=$(printf '%s\n' "$out" | sed -n 's/^# skipped \([0-9]*\)$/\1/p' | tail -1)
  if [ -z "$skipped" ]; then echo "test-real: no test summary from the guest" >&2; exit 1; fi
  if [ "$skipped" != 0 ]; then echo "test-real: $skipped real-module tests were skipped in the guest" >&2; exit 1; fi
fi
exit $rc
