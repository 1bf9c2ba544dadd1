#!/usr/bin/env bash
# Runs the bridge Worker under `wrangler dev` on a real local D1 (127.0.0.1 only, no network) and
# prints its URL. The same Worker as deployed; its database is a local one in DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
Usage: $(basename "$0") --state DIR [--secret S] [--port P] [--timeout S]

Starts tandem's D1 bridge Worker (src/bridge.js) with 'wrangler dev' on
127.0.0.1, in the background, with a real local D1 database persisted in DIR.
Waits until it answers, then prints its URL (http://127.0.0.1:PORT) on stdout.
Point tandem at it with d1.transport "bridge", d1.endpoint = that URL and
d1.token_env = a variable holding the secret.

  --state DIR    state folder: the database, pid/port files, log (created if missing)
  --secret S     the bridge's secret (default: local-bridge-secret)
  --next-secret S  a second secret it accepts too, as during a rotation (secret.sh begin)
  --var K:V      a Worker variable, e.g. TANDEM_BRIDGE_MAX_STATEMENTS:50 (repeatable)
  --port P       port to listen on; 0 or omitted picks a free port
  --timeout S    seconds to wait for it to answer (default: 60)
  -h, --help     show this help

Idempotent: if it already runs for DIR, prints its URL. Stop it with
stop.sh --state DIR. Uses the wrangler pinned in tools/d1-local (npm ci there
if needed).
EOF
}

STATE="" SECRET=local-bridge-secret NEXT="" PORT=0 TIMEOUT=60 VARS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --state) STATE=${2:?--state needs a value}; shift 2 ;;
    --secret) SECRET=${2:?--secret needs a value}; shift 2 ;;
    --next-secret) NEXT=${2:?--next-secret needs a value}; shift 2 ;;
    --var) VARS+=(--var "${2:?--var needs K:V}"); shift 2 ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "d1-bridge dev: unknown argument: $1" >&2; exit 1 ;;
  esac
done
[ -n "$STATE" ] || { usage >&2; echo "d1-bridge dev: --state DIR is required" >&2; exit 1; }

exec "$HERE/../d1-local/start.sh" --worker "$HERE/wrangler.local.jsonc" --probe-path /v1/query \
  --token-var TANDEM_BRIDGE_SECRET --token "$SECRET" ${NEXT:+--var "TANDEM_BRIDGE_SECRET_NEXT:$NEXT"} ${VARS[@]+"${VARS[@]}"} --state "$STATE" --port "$PORT" --timeout "$TIMEOUT"
