# Sourced by the scripts that use the kernel lab (a QEMU VM with the real blksnap module, built by
# the shared tools in ../shared/tools/kernel-lab from the upstream module source, never copied here).
# Sets KERNEL_LAB (the tools) and LAB_DIR (the built lab); BKP_KERNEL_LAB names the tools elsewhere.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KERNEL_LAB=${BKP_KERNEL_LAB:-}
if [ -z "$KERNEL_LAB" ]; then
  for d in "$_root/../shared/tools/kernel-lab" /work/shared/tools/kernel-lab; do
    [ -f "$d/run-in-guest.sh" ] && { KERNEL_LAB=$(cd "$d" && pwd); break; }
  done
fi
if [ -z "$KERNEL_LAB" ] || [ ! -f "$KERNEL_LAB/run-in-guest.sh" ]; then
  echo "kernel lab tools not found (looked in $_root/../shared/tools/kernel-lab and /work/shared/tools/kernel-lab): set BKP_KERNEL_LAB" >&2
  exit 125
fi
export LAB_DIR=${LAB_DIR:-/tmp/bkp-kernel-lab}
