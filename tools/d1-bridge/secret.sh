#!/usr/bin/env bash
# Sets or rotates the bridge Worker's secret with the pinned wrangler, without a moment in which
# tandem's secret is refused.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
Usage: $(basename "$0") --name WORKER (set|begin|end) VAR

The bridge accepts TANDEM_BRIDGE_SECRET and, while a rotation is under way,
TANDEM_BRIDGE_SECRET_NEXT. Each step reads the secret from the environment
variable VAR (never from the command line).

  set VAR     TANDEM_BRIDGE_SECRET = \$VAR (first deploy, or a rotation that may
              refuse tandem until it has the new secret too)
  begin VAR   TANDEM_BRIDGE_SECRET_NEXT = \$VAR: both secrets work from now on
  end VAR     TANDEM_BRIDGE_SECRET = \$VAR and TANDEM_BRIDGE_SECRET_NEXT deleted

A rotation: begin NEW; give every tandem the new secret (its d1.token_env
variable, then restart it, one instance at a time); end NEW.
EOF
}

die() { echo "d1-bridge secret: $*" >&2; exit 1; }
NAME=""
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && { usage; exit 0; }
[ "${1:-}" = "--name" ] || { usage >&2; die "--name WORKER comes first"; }
NAME=${2:?--name needs a value}
STEP=${3:-}
VAR=${4:-}
[ -n "$VAR" ] || { usage >&2; die "name the variable holding the secret"; }
[ -n "${!VAR:-}" ] || die "$VAR is unset or empty"
CONFIG=$HERE/.deploy/wrangler.$NAME.jsonc
[ -f "$CONFIG" ] || die "no $CONFIG: deploy $NAME with deploy.sh first"
wrangler() {
  WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true node "$HERE/../d1-local/node_modules/wrangler/bin/wrangler.js" "$@"
}
case "$STEP" in
  set|end) printf '%s' "${!VAR}" | wrangler secret put TANDEM_BRIDGE_SECRET --config "$CONFIG" ;;
  begin) printf '%s' "${!VAR}" | wrangler secret put TANDEM_BRIDGE_SECRET_NEXT --config "$CONFIG" ;;
  *) usage >&2; die "unknown step: $STEP (set, begin or end)" ;;
esac
if [ "$STEP" = end ]; then
  wrangler secret delete TANDEM_BRIDGE_SECRET_NEXT --config "$CONFIG" --force 2>/dev/null || true
fi
