#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo fuzz) on stable Rust: not run
# by CI; its results go in the issue notes, and every crash it finds becomes a
# regression test. `--sanitizer none` keeps cargo fuzz off nightly-only flags
# (coverage instrumentation itself is a stable `-C` option).
# Targets (fuzz/fuzz_targets/): spec_load (lima.yaml + a base: file through
# load, defaults, validation), cidata_iso (the ISO writer read back by
# isoinfo), plan (random desired/observed pairs; replanning after a modelled
# converge is empty).
# Usage: hack/fuzz.sh [SECONDS per target] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec_load cidata_iso plan)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/spec_load
cp -n templates/*.yaml fuzz/corpus/spec_load/ 2>/dev/null || true
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${secs}s" >&2
  if ! cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "fuzz: $t found a failure (its input is in fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit "$status"
