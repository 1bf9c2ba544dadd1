#!/usr/bin/env bash
# Sets up, builds, and runs tandem with the example configuration (SQLite file in var/).
# Extra arguments go to `tandem serve` (e.g. --listen 127.0.0.1:7000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" release
cd "$root"
exec "$root/build/proxy/tandem" serve --config "$root/conf/tandem.jsonc" "$@"
