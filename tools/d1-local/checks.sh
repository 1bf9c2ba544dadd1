# Shared by smoke.sh and ../d1-bridge/check.sh (sourced, not run): pass/fail counting and
# `check`, which tests an HTTP answer. The caller sets STATE (a temp folder), and before each
# check STATUS (the HTTP status) and the answer in $STATE/resp.json (BODY, its text).
PASS=0 FAIL=0

ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
ko() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/       /'; }

# check NAME WANT-STATUS JS-EXPR: passes if STATUS matches and EXPR (over the parsed answer `j`,
# with `eq` = deep equality) is true.
check() {
  local name=$1 want=$2 expr=$3
  if [ "$STATUS" != "$want" ]; then
    ko "$name" "HTTP $STATUS (want $want): $BODY"
    return
  fi
  if EXPR=$expr node -e '
      const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
      const eq = (a, b) => require("util").isDeepStrictEqual(a, b);
      process.exit(eval(process.env.EXPR) ? 0 : 1);' <"$STATE/resp.json" 2>"$STATE/node.err"; then
    ok "$name"
  else
    ko "$name" "check failed: $expr
$(cat "$STATE/node.err")
body: $BODY"
  fi
}
