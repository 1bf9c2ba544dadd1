#!/usr/bin/env bash
# Smoke test of the local D1: starts it on a free port in a temp folder, checks
# the REST API end to end with curl + node, stops it, and prints
# "N passed, N failed". Exits 0 only if every check passed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in -h|--help) echo "Usage: $(basename "$0")  (no arguments; needs node and curl)"; exit 0 ;; esac

TOKEN=smoke-token
ACCOUNT=0123456789abcdef0123456789abcdef
DB0=00000000-0000-4000-8000-000000000000
DB1=00000000-0000-4000-8000-000000000001
DB2=00000000-0000-4000-8000-000000000002
STATE=$(mktemp -d "${TMPDIR:-/tmp}/d1-local-smoke.XXXXXX")
. "$HERE/checks.sh"

cleanup() { "$HERE/stop.sh" --state "$STATE" >/dev/null 2>&1; rm -rf "$STATE"; }
trap cleanup EXIT


# req PATH-SUFFIX BODY [TOKEN] [DB]: POSTs to .../d1/database/DB/PATH-SUFFIX; sets STATUS, BODY.
req() {
  local path=$1 body=$2 token=${3-$TOKEN} db=${4:-$DB0}
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  STATUS=$(curl -s -o "$STATE/resp.json" -w '%{http_code}' --max-time 30 "${auth[@]}" \
    -H 'content-type: application/json' --data-binary "$body" \
    "$URL/client/v4/accounts/$ACCOUNT/d1/database/$db/$path")
  BODY=$(cat "$STATE/resp.json")
}

ERR='j.success === false && j.result === null && eq(j.messages, []) && j.errors.length === 1'
META_KEYS='["changed_db","changes","duration","last_row_id","rows_read","rows_written","size_after","served_by_primary","timings"]'

if ! URL=$("$HERE/start.sh" --state "$STATE" --token "$TOKEN"); then
  ko "start.sh" "could not start"
  echo "$PASS passed, $FAIL failed"
  exit 1
fi
ok "start.sh printed $URL"
[ "$("$HERE/start.sh" --state "$STATE" --token "$TOKEN")" = "$URL" ] &&
  ok "start.sh again: same instance" || ko "start.sh again: same instance"

req query '{"sql":"CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER, f REAL, s TEXT, z, b BLOB)"}'
check "create table" 200 'j.success && eq(j.errors, []) && j.result.length === 1 && j.result[0].success && eq(j.result[0].results, [])'

TEXT='héllo wörld ✓ 日本語 🚀 \"q\" \\ end'  # JSON-escaped
req query "{\"sql\":\"INSERT INTO items (n, f, s, z, b) VALUES (?, ?, ?, ?, ?)\",\"params\":[42, 3.25, \"$TEXT\", null, [0,1,2,254,255]]}"
check "insert with params (int, float, unicode text, null, blob)" 200 \
  'const m = j.result[0].meta; j.success && m.changes === 1 && m.last_row_id === 1 && m.changed_db === true && m.rows_written >= 1'

ROW='{id: 1, n: 42, f: 3.25, s: "héllo wörld ✓ 日本語 🚀 \"q\" \\ end", z: null, b: [0, 1, 2, 254, 255]}'
req query '{"sql":"SELECT * FROM items WHERE id = ?","params":[1]}'
check "select via /query (values and meta shape)" 200 \
  "const r = j.result[0]; eq(r.results, [$ROW]) && eq(Object.keys(r.meta), $META_KEYS) && typeof r.meta.timings.sql_duration_ms === 'number' && r.meta.rows_read === 1"

req raw '{"sql":"SELECT * FROM items"}'
check "select via /raw" 200 \
  "const r = j.result[0].results, o = $ROW; eq(r.columns, Object.keys(o)) && eq(r.rows, [Object.values(o)]) && eq(Object.keys(j.result[0].meta), $META_KEYS)"

req raw '{"sql":"SELECT 1 AS a, 2 AS a; SELECT id, s FROM items WHERE 0"}'
check "/raw keeps duplicate columns and empty results' columns; one result per statement" 200 \
  'eq(j.result.map(r => r.results), [{columns: ["a", "a"], rows: [[1, 2]]}, {columns: ["id", "s"], rows: []}])'

req raw '{"sql":"SELECT ? AS a, '"'"'x;y'"'"' AS s; -- c;d\n CREATE TRIGGER trg AFTER INSERT ON items BEGIN SELECT 1; SELECT 2; END; /* ; */ SELECT ?2 AS b, ?1 AS c;","params":[1,2,3]}'
check "sql split on ; outside strings/comments/trigger bodies; params spread in order" 200 \
  'eq(j.result.map(r => r.results.rows), [[[1, "x;y"]], [], [[3, 2]]])'

req query '{"batch":[{"sql":"INSERT INTO items (id, s) VALUES (?, ?)","params":[2,"two"]},{"sql":"SELECT count(*) AS c FROM items"}]}'
check "batch: one result per statement" 200 'j.result.length === 2 && j.result[1].results[0].c === 2'

req query '{"batch":[{"sql":"INSERT INTO items (id, s) VALUES (3, ?)","params":["three"]},{"sql":"UPDATE items SET s = ? WHERE id = 2","params":["changed"]},{"sql":"INSERT INTO items (id) VALUES (1)"}]}'
check "batch with a failing statement: 400/7500 constraint error" 400 \
  "$ERR && j.errors[0].code === 7500 && /^UNIQUE constraint failed: items\.id: SQLITE_CONSTRAINT/.test(j.errors[0].message)"
req query '{"sql":"SELECT id, s FROM items ORDER BY id"}'
check "batch is atomic: nothing from it persisted" 200 'eq(j.result[0].results, [{id: 1, s: "héllo wörld ✓ 日本語 🚀 \"q\" \\ end"}, {id: 2, s: "two"}])'

req query '{"sql":"INSERT INTO items (id) VALUES (4); INSERT INTO no_such_table VALUES (1)"}'
check "multi-statement sql with an error: 400/7500" 400 "$ERR && j.errors[0].code === 7500"
req query '{"sql":"SELECT count(*) AS c FROM items WHERE id = 4"}'
check "multi-statement sql is atomic" 200 'j.result[0].results[0].c === 0'

req query '{"sql":"SELEC * FROM items"}'
check "syntax error: 400/7500 <msg>: SQLITE_ERROR" 400 \
  "$ERR && j.errors[0].code === 7500 && /syntax error.*: SQLITE_ERROR$/.test(j.errors[0].message)"

req query '{"sql":"BEGIN"}'
check "BEGIN is rejected (400/7500)" 400 "$ERR && j.errors[0].code === 7500"

req query '{"sql":"SELECT 1"}' wrong-token
check "bad token: 403/10000" 403 "$ERR && eq(j.errors[0], {code: 10000, message: 'Authentication error'})"
req query '{"sql":"SELECT 1"}' ""
check "missing token: 403/10000" 403 "$ERR && j.errors[0].code === 10000"

req query '{"sql":"SELECT 1"}' "$TOKEN" 00000000-0000-4000-8000-000000009999
check "unknown database: 404/7404" 404 "$ERR && j.errors[0].code === 7404"

req query '{"sql": 1}'
check "malformed body: 400/7400" 400 "$ERR && j.errors[0].code === 7400"

req nope '{}'
check "unknown path: 404/7003" 404 "$ERR && eq(j.errors[0], {code: 7003, message: 'No route for the URI'})"

req query '{"sql":"SELECT name FROM sqlite_master WHERE name = ?","params":["items"]}' "$TOKEN" "$DB1"
check "databases are isolated (DB01 has no items)" 200 'eq(j.result[0].results, [])'

req fault '{"count":1,"status":429,"code":7429,"message":"D1 DB is overloaded. Too many requests queued."}' "$TOKEN" "$DB1"
req query '{"sql":"SELECT 1"}' "$TOKEN" "$DB1"
check "fault hook: injected 429" 429 "$ERR && j.errors[0].code === 7429"
req query '{"sql":"SELECT 1 AS one"}' "$TOKEN" "$DB1"
check "fault hook: only once" 200 'j.result[0].results[0].one === 1'

req query '{"sql":"CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES (?)","params":["survives restart"]}' "$TOKEN" "$DB2"
check "write to DB02" 200 'j.result.length === 2'

req reset ''
check "reset (local extension)" 200 'j.success && j.result.dropped.some(d => d.name === "items")'
req query '{"sql":"SELECT name FROM sqlite_master WHERE name NOT LIKE ? ESCAPE ?","params":["\\_cf\\_%","\\"]}'
check "reset dropped all user objects" 200 'eq(j.result[0].results, [])'

# Restart on the same state folder: data persists.
PGID=$(cat "$STATE/d1-local.pid")
"$HERE/stop.sh" --state "$STATE" && ok "stop.sh" || ko "stop.sh"
left=$(ps -e -o pid=,pgid=,stat=,args= | awk -v g="$PGID" '$2 == g && $3 !~ /^Z/')
[ -z "$left" ] && ok "no processes left after stop" || ko "no processes left after stop" "$left"
"$HERE/stop.sh" --state "$STATE" && ok "stop.sh again (idempotent)" || ko "stop.sh again (idempotent)"
if URL=$("$HERE/start.sh" --state "$STATE" --token "$TOKEN"); then
  req query '{"sql":"SELECT v FROM kept"}' "$TOKEN" "$DB2"
  check "data persists across restart" 200 'eq(j.result[0].results, [{v: "survives restart"}])'
else
  ko "restart"
fi
PGID=$(cat "$STATE/d1-local.pid" 2>/dev/null || echo none)
"$HERE/stop.sh" --state "$STATE" || ko "final stop"
left=$(ps -e -o pid=,pgid=,stat=,args= | awk -v g="$PGID" '$2 == g && $3 !~ /^Z/')
[ -z "$left" ] && ok "no processes left after final stop" || ko "no processes left after final stop" "$left"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
