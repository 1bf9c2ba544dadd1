#!/usr/bin/env bash
# Sets up, builds (with -Werror and ASan/UBSan) and runs the whole test suite:
# unit and integration tests (ctest), the TypeScript client's tests against that build, the codec
# fuzzer for a bounded number of runs, the local D1 smoke test and the bridge Worker's check. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"

echo "== build (Werror, ASan+UBSan)"
"$root/scripts/build.sh" ci

echo "== unit and integration tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$root/build-ci" && ctest --output-on-failure -j "$(nproc)")

echo "== TypeScript client tests"
# Against the ASan/UBSan build, with the sanitizer options above: a server that does not exit 0
# on SIGTERM (a leak or sanitizer report included) fails the test that stopped it.
TANDEM_BIN="$root/build-ci/proxy/tandem" "$root/protocol/clients/js/run-tests.sh"

echo "== codec fuzzer (bounded)"
"$root/scripts/build.sh" fuzz
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$root"/tests/fuzz/corpus/* "$corpus"/
"$root/build-fuzz/tests/codec_fuzz" -runs=50000 -max_len=4096 "$corpus" 2>&1 | tail -n 3

if [ -x "$root/tools/d1-local/smoke.sh" ]; then
  echo "== local D1 smoke test"
  "$root/tools/d1-local/smoke.sh"
fi
echo "== D1 bridge Worker check"
"$root/tools/d1-bridge/check.sh"
echo "== all tests passed"
