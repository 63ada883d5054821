#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs exactly this).
# Installs what the tests need, builds the offline test guest image when the
# end-to-end suite needs it, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh

# The offline Debian guest the end-to-end tests boot (cached after the first build).
LIMA_TEST_TEMPLATE=$(hack/build-test-image.sh | tail -n1)
export LIMA_TEST_TEMPLATE

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
