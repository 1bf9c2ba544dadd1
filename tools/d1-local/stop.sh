#!/usr/bin/env bash
# Stops the local D1 started by start.sh for a state folder, and waits until it is gone.
set -euo pipefail

usage() {
  cat <<EOF
Usage: $(basename "$0") --state DIR [--timeout S]

Stops the local D1 that start.sh started for DIR: sends SIGTERM to its whole
process group (wrangler and the workerd it spawned), waits until every process
of it is gone (SIGKILL after --timeout seconds, default 10), and removes the
pid/port files. Does nothing, successfully, if it is not running.
EOF
}

die() { echo "d1-local stop: $*" >&2; exit 1; }

STATE="" TIMEOUT=10
while [ $# -gt 0 ]; do
  case "$1" in
    --state) STATE=${2:?--state needs a value}; shift 2 ;;
    --state=*) STATE=${1#*=}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$STATE" ] || { usage >&2; die "--state DIR is required"; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad --timeout: $TIMEOUT"
[ -d "$STATE" ] || exit 0
PIDF=$STATE/d1-local.pid PORTF=$STATE/d1-local.port

pgid=$(cat "$PIDF" 2>/dev/null || true)
if ! [[ "$pgid" =~ ^[0-9]+$ ]]; then
  rm -f "$PIDF" "$PORTF"
  exit 0
fi

# Our live processes: members of process group $pgid running wrangler, workerd
# or esbuild (guards against a stale pid file whose id was reused by something
# else). Zombies count as gone: they have exited and only wait to be reaped.
ours() {
  ps -e -o pid=,pgid=,stat=,args= |
    awk -v g="$pgid" '$2 == g && $3 !~ /^Z/ && /wrangler|workerd|esbuild/' || true
}

if [ -n "$(ours)" ]; then
  kill -TERM -- "-$pgid" 2>/dev/null || true
  deadline=$((SECONDS + TIMEOUT))
  while [ -n "$(ours)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if [ -n "$(ours)" ]; then
    echo "d1-local stop: still running after ${TIMEOUT}s, sending SIGKILL" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(ours)" ] && break; sleep 0.1; done
  fi
  [ -z "$(ours)" ] || die "could not stop process group $pgid"
fi
rm -f "$PIDF" "$PORTF"
