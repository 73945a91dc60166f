#!/usr/bin/env bash
# Install everything the tests need, build the package with its Cython
# speedups into .venv, and run the whole test suite (both implementations of
# every compiled module). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients and build headers from Debian (interop tests start them on 127.0.0.1).
APT_PACKAGES=(build-essential libssl-dev mktorrent transmission-cli aria2 opentracker python3-libtorrent qbittorrent-nox
              iproute2)  # ip, tc: the uTP fairness test's network namespaces
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Editable install: compiles _speedups/*.pyx in place, so the tests import the tree.
. scripts/venv.sh "[test]"

# The suite must run against the compiled modules (and, parametrized, the twins).
export TORRENT_REQUIRE_SPEEDUPS=1
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "no tests were collected"
    rc=0
fi
exit "$rc"
