#!/usr/bin/env bash
# Installs what is missing (npm ci), builds, and runs every test of the TypeScript client:
#   - unit tests;
#   - the client against a real tandem server (TANDEM_BIN, default build/proxy/tandem);
#   - Drizzle's D1 driver (drizzle-orm, a dev dependency) over the client, against the same;
#   - the conformance cases against tandem AND, the same file, against the local D1's real
#     env.DB binding inside a Worker (wrangler from tools/d1-local), and a comparison of both.
# Exits non-zero on any failure; prints node's test summary.
#   TANDEM_BIN=…         the tandem binary to test against
#   TANDEM_JS_SKIP_D1=1  skip the local D1 half (it is required otherwise)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$here"

command -v node >/dev/null || { echo "run-tests: node is not installed" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (protocol/clients/js)"
  npm ci --no-audit --no-fund --loglevel=error
fi

export TANDEM_BIN=${TANDEM_BIN:-$root/build/proxy/tandem}
[ -x "$TANDEM_BIN" ] || { echo "run-tests: no tandem binary at $TANDEM_BIN (./scripts/build.sh release, or set TANDEM_BIN)" >&2; exit 1; }

if [ "${TANDEM_JS_SKIP_D1:-0}" != 1 ]; then
  d1=$root/tools/d1-local
  if [ ! -f "$d1/node_modules/wrangler/bin/wrangler.js" ] || [ "$d1/package-lock.json" -nt "$d1/node_modules/.package-lock.json" ]; then
    echo "== npm ci (tools/d1-local, for the local D1)"
    (cd "$d1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  export TANDEM_JS_REQUIRE_D1=1
fi

echo "== build"
npm run --silent build
echo "== tests (tandem: $TANDEM_BIN)"
node --test dist/test/*.test.js
