#!/usr/bin/env bash
# Stops the bridge Worker that dev.sh started for a state folder, and waits until it is gone.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in
  -h|--help)
    echo "Usage: $(basename "$0") --state DIR [--timeout S]"
    echo
    echo "Stops the bridge Worker dev.sh started for DIR (all its processes), like"
    echo "tools/d1-local/stop.sh. Does nothing, successfully, if it is not running."
    exit 0 ;;
esac
exec "$HERE/../d1-local/stop.sh" "$@"
