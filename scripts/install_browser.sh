#!/usr/bin/env bash
# Installs what the dashboard's browser test needs: Debian's chromium and playwright-core
# (the driver library only: no bundled browser download) into tests/browser/node_modules.
# Idempotent; run as root (or with sudo) for apt-get.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y chromium || { $SUDO apt-get update && $SUDO apt-get install -y chromium; }
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "error: node and npm are needed for the browser test (apt-get install -y nodejs npm)" >&2
  exit 1
fi

cd "$ROOT/tests/browser"
if [ ! -d node_modules/playwright-core ]; then
  # package.json pins the version; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: we use /usr/bin/chromium.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent
fi
echo "chromium: $(command -v chromium) · playwright-core: $(node -p "require('playwright-core/package.json').version")"
