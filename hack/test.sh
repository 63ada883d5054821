#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs exactly this).
# Checks formatting and lints first (cheap, and fails fast), installs what the
# tests need, builds the offline test guest image the end-to-end suite boots,
# then runs every test. Arguments go to `cargo nextest run` (or `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."

# rustfmt and clippy: `rustup component add` works offline only when the
# component is already downloaded, so say what to do when it cannot.
for tool in fmt:rustfmt clippy:clippy; do
  sub=${tool%%:*} component=${tool##*:}
  if ! cargo "$sub" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    echo "test.sh: installing the $component component" >&2
    rustup component add "$component" >&2 || true
  fi
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    echo "test.sh: error: \`cargo $sub\` is not available and could not be installed:" \
      "run \`rustup component add $component\` with network access (see" \
      "\`rustup component list --installed\`), or install the distribution's $component package" >&2
    exit 1
  fi
done

if ! cargo fmt --all -- --check; then
  echo "test.sh: error: the code is not formatted as rustfmt does (diff above):" \
    "run \`cargo fmt --all\` and commit the result" >&2
  exit 1
fi
if ! cargo clippy --all-targets -- -D warnings; then
  echo "test.sh: error: clippy warnings (above) fail the build:" \
    "fix them (\`cargo clippy --fix --all-targets\` handles many) and run hack/test.sh again" >&2
  exit 1
fi

hack/install-deps.sh

# The offline Debian guest the end-to-end tests boot (cached after the first build).
LIMA_TEST_TEMPLATE=$(hack/build-test-image.sh | tail -n1)
export LIMA_TEST_TEMPLATE
# The offline containerd archive (nerdctl-full layout, from Debian packages) and the OCI
# image beside it, for the containerd end-to-end test ("PATH sha256:HEX"; cached).
LIMA_TEST_CONTAINERD_ARCHIVE=$(hack/build-test-containerd.sh | tail -n1)
export LIMA_TEST_CONTAINERD_ARCHIVE
# The static guest agent the host agents ship in cidata.
LIMA_GUESTAGENT=$(hack/build-guestagent.sh | tail -n1)
export LIMA_GUESTAGENT

# What each VM test held the guest lock for (tests/it/common: GUEST_LOCK_LOG).
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
lock_log=$target_dir/tmp/guest-lock.log
rm -f "$lock_log"

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || status=$?
else
  cargo test --no-fail-fast "$@" || status=$?
fi

# The seed's integration entry point, on the local test image, with the binary the
# tests just built.
if [ -s "$lock_log" ]; then
  echo "test.sh: time each VM test held the guest (the serialized part of the run):" >&2
  sort -t' ' -k5 -rn "$lock_log" | sed 's/^/  /' >&2
fi

# The test build made target/debug/limactl (integration tests need the binaries);
# `cargo build` would relink it (without the dev-dependencies, regex-automata's
# features differ) for a minute and more on two cores.
limactl=$target_dir/debug/limactl
[ -x "$limactl" ] || cargo build -q --bin limactl
LIMACTL=$limactl hack/test-templates.sh "$LIMA_TEST_TEMPLATE" || status=$?
exit "$status"
