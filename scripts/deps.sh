#!/usr/bin/env bash
# Installs tandem's Debian build and test dependencies when any is missing,
# and any further packages named as arguments (bench/run.sh adds its own).
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libpqxx-dev libpq-dev libspdlog-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libboost-dev libsystemd-dev libgtest-dev libgmock-dev help2man go-md2man
  python3-jsonschema python3-yaml
  postgresql postgresql-contrib pgbouncer
  "$@"
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
