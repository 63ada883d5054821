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
# The static guest agent the host agents ship in cidata.
LIMA_GUESTAGENT=$(hack/build-guestagent.sh | tail -n1)
export LIMA_GUESTAGENT

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || status=$?
else
  cargo test --no-fail-fast "$@" || status=$?
fi

# The seed's integration entry point, on the local test image, with the binary the
# tests just built.
cargo build -q --bin limactl
LIMACTL=$PWD/target/debug/limactl hack/test-templates.sh "$LIMA_TEST_TEMPLATE" || status=$?
exit "$status"
