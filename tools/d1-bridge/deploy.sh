#!/usr/bin/env bash
# Deploys tandem's D1 bridge Worker in front of one D1 database with the wrangler pinned in
# tools/d1-local, and sets its secret. Run by a person, never by tests (except --dry-run).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WRANGLER_DIR=$HERE/../d1-local

usage() {
  cat <<EOF
Usage: $(basename "$0") --database NAME --database-id ID [--name WORKER] [--secret-env VAR]
                 [--max-statements N] [--dry-run]

Deploys the bridge Worker (src/bridge.js) bound to the D1 database NAME/ID, as
WORKER (default: tandem-d1-bridge), on the account wrangler is logged in to
(CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID, as for any 'wrangler deploy').
With --secret-env VAR, then sets the Worker secret TANDEM_BRIDGE_SECRET to the
value of the environment variable VAR (the same variable tandem's d1.token_env
names). Prints the Worker's URL; point d1.endpoint at it.

  --database NAME      the D1 database's name (wrangler d1 list)
  --database-id ID     its id (a UUID)
  --name WORKER        the Worker's name (default: tandem-d1-bridge)
  --secret-env VAR     set TANDEM_BRIDGE_SECRET from \$VAR after deploying
  --max-statements N   statements per request: 1000 on Workers Paid (default), 50 on Free
  --dry-run            build and check the Worker only (wrangler deploy --dry-run); no network
  -h, --help           show this help

The generated config is kept in $HERE/.deploy/ (not tracked). To rotate the
secret without downtime, see secret.sh --help.
EOF
}

die() { echo "d1-bridge deploy: $*" >&2; exit 1; }

NAME=tandem-d1-bridge DATABASE="" DATABASE_ID="" SECRET_ENV="" MAX_STATEMENTS=1000 DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --database) DATABASE=${2:?--database needs a value}; shift 2 ;;
    --database-id) DATABASE_ID=${2:?--database-id needs a value}; shift 2 ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --secret-env) SECRET_ENV=${2:?--secret-env needs a value}; shift 2 ;;
    --max-statements) MAX_STATEMENTS=${2:?--max-statements needs a value}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$DATABASE" ] || { usage >&2; die "--database NAME is required"; }
[[ "$DATABASE_ID" =~ ^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$ ]] ||
  die "--database-id must be the database's UUID (wrangler d1 list shows it), not '$DATABASE_ID'"
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "bad --name: $NAME (lowercase letters, digits and '-')"
[[ "$DATABASE" =~ ^[A-Za-z0-9_-]+$ ]] || die "bad --database: $DATABASE"
[[ "$MAX_STATEMENTS" =~ ^[0-9]+$ ]] && [ "$MAX_STATEMENTS" -ge 1 ] || die "bad --max-statements: $MAX_STATEMENTS"
if [ -n "$SECRET_ENV" ]; then
  [ -n "${!SECRET_ENV:-}" ] || die "--secret-env names $SECRET_ENV, which is unset or empty"
fi

if [ ! -f "$WRANGLER_DIR/node_modules/wrangler/bin/wrangler.js" ] ||
   [ "$WRANGLER_DIR/package-lock.json" -nt "$WRANGLER_DIR/node_modules/.package-lock.json" ]; then
  (cd "$WRANGLER_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tools/d1-local failed"
fi
wrangler() {
  WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true node "$WRANGLER_DIR/node_modules/wrangler/bin/wrangler.js" "$@"
}

mkdir -p "$HERE/.deploy"
CONFIG=$HERE/.deploy/wrangler.$NAME.jsonc
cat >"$CONFIG" <<JSON
{
  "name": "$NAME",
  "main": "../src/bridge.js",
  "compatibility_date": "2026-01-01",
  "workers_dev": true,
  "send_metrics": false,
  "d1_databases": [{ "binding": "DB", "database_name": "$DATABASE", "database_id": "$DATABASE_ID" }],
  "vars": { "TANDEM_BRIDGE_MAX_STATEMENTS": "$MAX_STATEMENTS", "TANDEM_BRIDGE_MAX_BODY_BYTES": "52428800" }
}
JSON

if [ "$DRY" = 1 ]; then
  wrangler deploy --config "$CONFIG" --dry-run --outdir "$HERE/.deploy/dist-$NAME" >&2
  echo "dry run: built $HERE/.deploy/dist-$NAME (nothing deployed)"
  exit 0
fi
wrangler deploy --config "$CONFIG" >&2
if [ -n "$SECRET_ENV" ]; then
  printf '%s' "${!SECRET_ENV}" | wrangler secret put TANDEM_BRIDGE_SECRET --config "$CONFIG" >&2
fi
echo "deployed $NAME in front of D1 database $DATABASE ($DATABASE_ID)."
echo "tandem: \"d1\": {\"transport\": \"bridge\", \"endpoint\": \"https://$NAME.<your workers.dev subdomain>.workers.dev\", \"token_env\": \"${SECRET_ENV:-TANDEM_BRIDGE_SECRET}\"}"
