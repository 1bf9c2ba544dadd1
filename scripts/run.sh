#!/usr/bin/env bash
# Sets up, builds, and runs tandem on a local SQLite file (var/tandem.db) and a local D1
# (tools/d1-local, state in var/d1), in dual-sqlite mode: SQLite leads, every write is copied to
# D1. The local D1 is stopped when tandem exits.
#   TANDEM_MODE=sqlite-only|dual-sqlite|dual-d1|d1-only   the mode (default dual-sqlite)
#   TANDEM_D1_TRANSPORT=rest|bridge   how tandem reaches the local D1: its REST API (default) or
#                                     tandem's bridge Worker (tools/d1-bridge) in front of it
# Extra arguments go to `tandem serve` (e.g. --listen 127.0.0.1:7000). The settings not written
# below are conf/tandem.jsonc's defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" release
cd "$root"
mkdir -p var

mode=${TANDEM_MODE:-dual-sqlite}
d1_url=$("$root/tools/d1-local/start.sh" --state "$root/var/d1")
trap '"$root/tools/d1-local/stop.sh" --state "$root/var/d1" >/dev/null 2>&1 || true' EXIT

transport=${TANDEM_D1_TRANSPORT:-rest}
case "$transport" in
  rest) endpoint=$d1_url ;;
  bridge) endpoint="$d1_url/bridge/{database_id}" ;;
  *) echo "run.sh: TANDEM_D1_TRANSPORT must be rest or bridge, not $transport" >&2; exit 2 ;;
esac
export TANDEM_LOCAL_D1_TOKEN=local-dev-token
echo "run.sh: local D1 at $d1_url (database DB00, over its $transport transport); tandem in $mode mode" >&2
cat >var/tandem.local.jsonc <<EOF
// Written by scripts/run.sh at every start; see conf/tandem.jsonc for every key.
{
  "mode": "$mode",
  "sqlite": { "path": "var/tandem.db" },
  "d1": {
    "transport": "$transport",
    "endpoint": "$endpoint",
    "account_id": "0123456789abcdef0123456789abcdef",
    "database_id": "00000000-0000-4000-8000-000000000000",
    "token_env": "TANDEM_LOCAL_D1_TOKEN",
  },
}
EOF
"$root/build/proxy/tandem" serve --config var/tandem.local.jsonc "$@"
