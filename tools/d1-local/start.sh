#!/usr/bin/env bash
# Starts the local D1 (wrangler dev + workerd) in the background and prints its base URL.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCOUNT_ID=0123456789abcdef0123456789abcdef
PROBE_DB=00000000-0000-4000-8000-000000000000

usage() {
  cat <<EOF
Usage: $(basename "$0") --state DIR [--port P] [--token T] [--timeout S]
       $(basename "$0") --worker CONFIG --probe-path PATH --token-var NAME ...   (another Worker)

Starts a local Cloudflare D1 that serves D1's REST API (see README.md) with
'wrangler dev' on 127.0.0.1, in the background, persisting to DIR. Waits until
it answers, then prints its base URL (http://127.0.0.1:PORT) on stdout.

  --state DIR    state folder: database files, pid/port files, log (created if missing)
  --port P       port to listen on; 0 or omitted picks a free port
  --token T      bearer token clients must send (default: local-dev-token)
  --timeout S    seconds to wait for it to answer (default: 60)
  --worker F     run the Worker of wrangler config F instead (tools/d1-bridge/dev.sh does)
  --probe-path P the path of its SELECT 1 probe (default: DB00's REST /query)
  --token-var V  the Worker variable that receives --token (default: D1_LOCAL_TOKEN)
  --var K:V      one more Worker variable (repeatable)
  -h, --help     show this help

If an instance is already running for DIR, prints its URL and exits 0.
Stop it with stop.sh --state DIR. Runs 'npm ci' first if node_modules is missing.
EOF
}

die() { echo "d1-local start: $*" >&2; exit 1; }

STATE="" PORT=0 TOKEN=local-dev-token TIMEOUT=60
VARS=()
WORKER=$HERE/wrangler.jsonc PROBE_PATH=/client/v4/accounts/$ACCOUNT_ID/d1/database/$PROBE_DB/query TOKEN_VAR=D1_LOCAL_TOKEN
while [ $# -gt 0 ]; do
  case "$1" in
    --state) STATE=${2:?--state needs a value}; shift 2 ;;
    --state=*) STATE=${1#*=}; shift ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --token) TOKEN=${2:?--token needs a value}; shift 2 ;;
    --token=*) TOKEN=${1#*=}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --worker) WORKER=${2:?--worker needs a value}; shift 2 ;;
    --probe-path) PROBE_PATH=${2:?--probe-path needs a value}; shift 2 ;;
    --token-var) TOKEN_VAR=${2:?--token-var needs a value}; shift 2 ;;
    --var) VARS+=(--var "${2:?--var needs K:V}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$STATE" ] || { usage >&2; die "--state DIR is required"; }
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -le 65535 ] || die "bad --port: $PORT"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad --timeout: $TIMEOUT"
[ -f "$WORKER" ] || die "no such wrangler config: $WORKER"
[[ "$TOKEN" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "bad --token (allowed: A-Z a-z 0-9 . _ ~ + / = -)"
command -v node >/dev/null || die "node is not installed"
command -v curl >/dev/null || die "curl is not installed"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
PIDF=$STATE/d1-local.pid PORTF=$STATE/d1-local.port LOG=$STATE/d1-local.log

# HTTP status of a cheap real query (SELECT 1 on DB00), or 000 if no answer.
probe() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"sql":"SELECT 1"}' \
    "http://127.0.0.1:$1$PROBE_PATH" || true
}

# Already running for this state folder?
if [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; then
  running=$(cat "$PORTF" 2>/dev/null || true)
  if [ -n "$running" ] && [ "$(probe "$running")" = 200 ]; then
    if [ "$PORT" != 0 ] && [ "$PORT" != "$running" ]; then
      die "already running for $STATE on port $running (asked for $PORT); stop it first"
    fi
    echo "http://127.0.0.1:$running"
    exit 0
  fi
  echo "d1-local start: instance for $STATE is not answering; restarting it" >&2
  "$HERE/stop.sh" --state "$STATE" >&2
fi
rm -f "$PIDF" "$PORTF"

# Dependencies: npm ci when node_modules is missing or older than the lockfile.
if [ ! -f "$HERE/node_modules/wrangler/bin/wrangler.js" ] ||
   [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >"$STATE/npm-ci.log" 2>&1) ||
    { tail -n 20 "$STATE/npm-ci.log" >&2; die "npm ci failed (log: $STATE/npm-ci.log)"; }
fi

# Start wrangler in its own session (so stop.sh can end the whole process
# group: wrangler's node processes, workerd, esbuild). Local only, no network:
# no metrics, no error reports, no update check (banner hidden), no Request.cf
# download, no local explorer; all listeners and the inspector on 127.0.0.1.
echo "=== $(date -u +%FT%TZ) start.sh: starting wrangler dev" >>"$LOG"
LOGSTART=$(wc -l <"$LOG")
(
  cd "$HERE"
  exec env \
    WRANGLER_SEND_METRICS=false \
    WRANGLER_SEND_ERROR_REPORTS=false \
    WRANGLER_HIDE_BANNER=true \
    CLOUDFLARE_CF_FETCH_ENABLED=false \
    X_LOCAL_EXPLORER=false \
    WRANGLER_CI_DISABLE_CONFIG_WATCHING=true \
    WRANGLER_LOG_PATH="$STATE/logs" \
    WRANGLER_REGISTRY_PATH="$STATE/registry" \
    BROWSER=none FORCE_COLOR=0 NO_COLOR=1 \
    setsid node node_modules/wrangler/bin/wrangler.js dev \
      --config "$WORKER" --local \
      --ip 127.0.0.1 --port "$PORT" \
      --inspector-ip 127.0.0.1 --inspector-port 0 \
      --persist-to "$STATE" \
      --var "$TOKEN_VAR:$TOKEN" ${VARS[@]+"${VARS[@]}"} \
      --show-interactive-dev-session=false --log-level "${D1_LOCAL_LOG_LEVEL:-info}"
) </dev/null >>"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$PIDF"

fail_start() {
  echo "d1-local start: $1; last lines of $LOG:" >&2
  tail -n 30 "$LOG" | sed 's/^/  | /' >&2
  "$HERE/stop.sh" --state "$STATE" >/dev/null 2>&1 || true
  exit 1
}

deadline=$((SECONDS + TIMEOUT))
port=""
while :; do
  kill -0 "$PID" 2>/dev/null || fail_start "wrangler exited early"
  if [ -z "$port" ]; then
    port=$(tail -n +"$LOGSTART" "$LOG" | grep -o 'Ready on http://127\.0\.0\.1:[0-9]*' | head -n 1 | grep -o '[0-9]*$' || true)
  fi
  if [ -n "$port" ]; then
    code=$(probe "$port")
    [ "$code" = 200 ] && break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail_start "not answering after ${TIMEOUT}s${port:+ (port $port, last status ${code:-none})}"
  sleep 0.2
done
# Record the process group id (equal to $PID, as setsid made it a session leader).
pgid=$(ps -o pgid= -p "$PID" | tr -d ' ')
[ -n "$pgid" ] && echo "$pgid" >"$PIDF"
echo "$port" >"$PORTF"
echo "http://127.0.0.1:$port"
