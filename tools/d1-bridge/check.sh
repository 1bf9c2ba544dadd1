#!/usr/bin/env bash
# End-to-end check of the bridge Worker as dev.sh runs it (a real local D1): its one endpoint,
# the secret and its rotation, the bounds, D1's errors, sessions; and that deploy.sh builds the
# Worker (--dry-run, nothing deployed). Prints "N passed, N failed"; exits 0 only if all passed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in -h|--help) echo "Usage: $(basename "$0")  (no arguments; needs node and curl)"; exit 0 ;; esac

SECRET=check-secret
STATE=$(mktemp -d "${TMPDIR:-/tmp}/d1-bridge-check.XXXXXX")
. "$HERE/../d1-local/checks.sh"
cleanup() { "$HERE/stop.sh" --state "$STATE" >/dev/null 2>&1; rm -rf "$STATE"; }
trap cleanup EXIT

# req BODY [SECRET] [EXTRA CURL ARGS...]: POSTs to /v1/query; sets STATUS, BODY, HEADERS.
req() {
  local body=$1 secret=${2-$SECRET}
  shift 2 2>/dev/null || shift $#
  local auth=()
  [ -n "$secret" ] && auth=(-H "Authorization: Bearer $secret")
  STATUS=$(curl -s -D "$STATE/headers" -o "$STATE/resp.json" -w '%{http_code}' --max-time 30 "${auth[@]}" "$@" \
    -H 'content-type: application/json' --data-binary "$body" "$URL/v1/query")
  BODY=$(cat "$STATE/resp.json")
  HEADERS=$(tr -d '\r' <"$STATE/headers")
}

ERR='j.success === false && j.result === null && j.errors.length === 1'

if ! URL=$("$HERE/dev.sh" --state "$STATE" --secret "$SECRET"); then
  ko "dev.sh" "could not start"
  echo "$PASS passed, $FAIL failed"
  exit 1
fi
ok "dev.sh printed $URL"

req '{"batch":[{"sql":"CREATE TABLE t (id INTEGER PRIMARY KEY, v, b BLOB)"},{"sql":"INSERT INTO t (v, b) VALUES (?, ?)","params":["x",[0,1,255]]},{"sql":"SELECT id, v, v, b FROM t"}]}'
check "a batch runs in order and answers rows and columns" 200 \
  'j.success && j.result.length === 3 && eq(j.result[2].results, {columns: ["id","v","v","b"], rows: [[1,"x","x",[0,1,255]]]}) && j.result[1].meta.changes === 1'

req '{"sql":"DELETE FROM t"}' ""
check "no secret: 401, nothing runs" 401 "$ERR && j.errors[0].code === 10000"
req '{"sql":"DELETE FROM t"}' "wrong-secret"
check "a wrong secret: 401" 401 "$ERR && j.errors[0].code === 10000"
req '{"sql":"SELECT count(*) AS n FROM t"}'
check "...and the row is still there" 200 'j.result[0].results.rows[0][0] === 1'

req '{"batch":[{"sql":"INSERT INTO t (v) VALUES (2)"},{"sql":"INSERT INTO nope VALUES (1)"}]}'
check "a failing statement fails the whole batch with D1's message" 400 "$ERR && j.errors[0].code === 7500 && /no such table: nope/.test(j.errors[0].message)"
req '{"sql":"SELECT count(*) AS n FROM t"}'
check "...and nothing of it committed" 200 'j.result[0].results.rows[0][0] === 1'

req 'not json'
check "malformed JSON: 400/7400" 400 "$ERR && j.errors[0].code === 7400"
req '{"batch":[{"sql":1}]}'
check "a statement without SQL text: 400/7400" 400 "$ERR && j.errors[0].code === 7400"
req '{"sql":"SELECT ?","params":[{"a":1}]}'
check "an object parameter: 400/7400" 400 "$ERR && j.errors[0].code === 7400"
BIG=$(node -e 'console.log(JSON.stringify({batch: Array.from({length: 1001}, () => ({sql: "SELECT 1"}))}))')
req "$BIG"
check "more statements than TANDEM_BRIDGE_MAX_STATEMENTS: 413/7413" 413 "$ERR && j.errors[0].code === 7413"

STATUS=$(curl -s -o "$STATE/resp.json" -w '%{http_code}' -H "Authorization: Bearer $SECRET" "$URL/v1/query")
BODY=$(cat "$STATE/resp.json")
check "GET: 405" 405 "$ERR && j.errors[0].code === 7001"
STATUS=$(curl -s -o "$STATE/resp.json" -w '%{http_code}' -H "Authorization: Bearer $SECRET" -d '{}' "$URL/v2/other")
BODY=$(cat "$STATE/resp.json")
check "another path: 404" 404 "$ERR && j.errors[0].code === 7003"

req '{"sql":"INSERT INTO t (v) VALUES (3)"}' "$SECRET" -H 'x-tandem-d1-bookmark: first-primary'
WRITE_BOOKMARK=$(sed -n 's/^x-tandem-d1-bookmark: //Ip' <<<"$HEADERS")
[ -n "$WRITE_BOOKMARK" ] && ok "a write in a session answers its bookmark ($WRITE_BOOKMARK)" || ko "a write in a session answers its bookmark" "$HEADERS"
req '{"sql":"SELECT count(*) FROM t"}' "$SECRET" -H "x-tandem-d1-bookmark: $WRITE_BOOKMARK"
check "a read at that bookmark sees the write, and says where it ran" 200 \
  'j.result[0].results.rows[0][0] === 2 && typeof j.result[0].meta.served_by_primary === "boolean"'
READ_BOOKMARK=$(sed -n 's/^x-tandem-d1-bookmark: //Ip' <<<"$HEADERS")
[ -n "$READ_BOOKMARK" ] && [[ ! "$READ_BOOKMARK" < "$WRITE_BOOKMARK" ]] && ok "the read's bookmark is not older" || ko "the read's bookmark is not older" "$WRITE_BOOKMARK vs $READ_BOOKMARK"
req '{"sql":"SELECT 1"}'
if grep -qi '^x-tandem-d1-bookmark' <<<"$HEADERS"; then ko "no session asked: no bookmark" "$HEADERS"; else ok "no session asked: no bookmark"; fi

# Rotation: the next secret works next to the current one (a restart with both set).
"$HERE/stop.sh" --state "$STATE" >/dev/null
if URL=$("$HERE/dev.sh" --state "$STATE" --secret "$SECRET" --next-secret next-secret --var TANDEM_BRIDGE_MAX_BODY_BYTES:2000); then
  req '{"sql":"SELECT count(*) FROM t"}' next-secret
  check "during a rotation the next secret is accepted (and the data survived a restart)" 200 'j.result[0].results.rows[0][0] === 2'
  req '{"sql":"SELECT 1"}'
  check "...and so is the current one" 200 'j.success'
  req "{\"sql\":\"SELECT '$(printf 'x%.0s' $(seq 1 2100))'\"}"
  check "a body over TANDEM_BRIDGE_MAX_BODY_BYTES: 413/7413, nothing runs" 413 "$ERR && j.errors[0].code === 7413"
else
  ko "dev.sh restart with a next secret"
fi

if out=$("$HERE/deploy.sh" --database check --database-id 00000000-0000-4000-8000-0000000000c0 --name tandem-d1-bridge-check --dry-run 2>&1); then
  ok "deploy.sh --dry-run builds the Worker"
else
  ko "deploy.sh --dry-run builds the Worker" "$out"
fi
rm -rf "$HERE/.deploy/wrangler.tandem-d1-bridge-check.jsonc" "$HERE/.deploy/dist-tandem-d1-bridge-check"

"$HERE/stop.sh" --state "$STATE" >/dev/null
pgrep -f "persist-to $STATE" >/dev/null && ko "no processes left after stop" || ok "no processes left after stop"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
