#!/usr/bin/env bash
# Installs what tandem needs on Debian 12 (as root), only what is missing. Idempotent.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-json1.81-dev
  libsqlite3-dev sqlite3 libssl-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libspdlog-dev
  clang libclang-rt-14-dev      # the codec's libFuzzer target
  netcat-openbsd curl           # PROTOCOL.md's examples use nc; tools/d1-local uses curl
  nodejs npm                    # tools/d1-local (wrangler) and the TypeScript client
  chromium                      # the dashboard test opens GET / in headless Chromium
  prometheus                    # promtool checks /metrics and conf/prometheus's alert rules
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A newer Node.js from elsewhere is fine: only install Debian's when there is none.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$root/tools/d1-local/package-lock.json" ] && [ ! -d "$root/tools/d1-local/node_modules" ]; then
  echo "setup: npm ci in tools/d1-local"
  (cd "$root/tools/d1-local" && npm ci --no-audit --no-fund --loglevel=error)
fi
