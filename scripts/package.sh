#!/usr/bin/env bash
# Builds tandem's Debian package: a Release build in build-package (or
# $TANDEM_BUILD_DIR), installed under /usr, packed by CPack with its
# dependencies from dpkg-shlibdeps. Prints the .deb's path.
# Install it with: sudo apt install ./tandem_*.deb  (docs/install.md)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${TANDEM_BUILD_DIR:-build-package}"
scripts/deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DTANDEM_BUILD_TESTS=OFF -DTANDEM_SANITIZE= >/dev/null
cmake --build "$build" -j"$(nproc)"
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/tandem_*.deb
