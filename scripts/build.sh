#!/usr/bin/env bash
# Configures and builds tandem with ninja and ccache.
#   scripts/build.sh            release build in build/
#   scripts/build.sh ci         -Werror + ASan/UBSan in build-ci/ (what the test suite uses)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-release}
case "$kind" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_TESTS=ON) ;;
  ci) dir=build-ci; flags=(-DCMAKE_BUILD_TYPE=Debug -DTANDEM_WERROR=ON -DTANDEM_SANITIZE=ON -DTANDEM_TESTS=ON) ;;
  fuzz) dir=build-fuzz; flags=(-DCMAKE_BUILD_TYPE=Debug -DTANDEM_FUZZ=ON -DTANDEM_TESTS=OFF
                              -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang) ;;
  *) echo "usage: $0 [release|ci|fuzz]" >&2; exit 2 ;;
esac
# Paths relative to the checkout in ccache's keys, so that another clone (CI) reuses the cache.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
cmake -S "$root" -B "$root/$dir" -G Ninja "${flags[@]}" >/dev/null
# Two cores: two jobs, so Beast/Asio translation units do not swap each other out.
ninja -C "$root/$dir" -j "$(nproc)"
