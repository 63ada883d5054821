#!/usr/bin/env bash
# Every benchmark figure in one run, written to BENCHMARKS.md (medians, ratios,
# the machine): boot ratio (bench-boot), resume vs cold boot and `shell` vs
# `ssh` (bench-guest), no-op apply over 100 and diff over 1000 (bench-apply),
# list over 100 (bench-list), watch latency, daemon and host agent RSS,
# relaunch after a kill (bench-watch --vm), forward latency and mount
# throughput (bench-portforward), download vs curl (bench-download); whole-
# process costs also as ratios to the process floor (`limactl --version`);
# the divan micro-benchmarks (benches/micro.rs).
# Heavy (several TCG boots): the machine's load is recorded before and after.
# Usage: hack/bench.sh [RUNS]   (boot runs, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -q
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/limactl
export LIMACTL=$bin
out=BENCHMARKS.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median_ms() {
  local t=() s e
  for _ in $(seq 21); do
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    e=$(date +%s%N)
    t+=($(((e - s) / 1000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
floor=$(median_ms "$bin" --version)

run() { # title, script and args; its stdout goes into the report
  local title=$1
  shift
  echo "== $title" >&2
  {
    echo "## $title"
    echo
    echo '```'
    if "$@" 2>"$tmp/err"; then :; else
      echo "FAILED (exit $?): $(tail -n3 "$tmp/err")"
    fi
    echo '```'
    echo
  } >>"$tmp/body"
}
run "Boot: bare QEMU vs limactl (hack/bench-boot.sh $runs)" hack/bench-boot.sh "$runs"
run "Resume vs cold boot, shell vs ssh (hack/bench-guest.sh $runs)" hack/bench-guest.sh "$runs"
run "Declarative layer (hack/bench-apply.sh)" hack/bench-apply.sh
run "list over 100 instances (hack/bench-list.sh)" hack/bench-list.sh
run "Watch daemon, RSS, relaunch (hack/bench-watch.sh --vm)" hack/bench-watch.sh --vm
run "Forwards and mounts (hack/bench-portforward.sh)" hack/bench-portforward.sh
run "Download vs curl (hack/bench-download.sh)" hack/bench-download.sh
run "Micro-benchmarks (cargo bench --bench micro)" cargo bench -q --bench micro
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# The accelerator limactl's own probe chose (bench-boot reports it): /dev/kvm
# opening, or even `-accel kvm` starting, does not mean KVM works.
accel=$(grep -oE '^accelerator: [a-z]+' "$tmp/body" | head -n1 | cut -d' ' -f2)
accel=${accel:-unknown}

ms_of() { grep -F "$1" "$tmp/body" | head -n1 | grep -oE 'median [0-9.]+ ms' | grep -oE '[0-9.]+' || true; }
ratio() { [ -n "$1" ] && awk -v a="$1" -v b="$floor" 'BEGIN { printf "%.1f", a / b }' || echo "?"; }
list=$(ms_of "limactl list        (100")
apply=$(ms_of "no-op apply, 100")
{
  echo "# Benchmarks"
  echo
  echo "Written by \`hack/bench.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| CPU | $(lscpu | sed -n 's/^Model name: *//p' | head -n1) |"
  echo "| cores | $(nproc) |"
  echo "| accelerator | $accel |"
  echo "| QEMU | $(qemu-system-x86_64 --version | head -n1) |"
  echo "| load average before / after | $load_before / $load_after |"
  echo
  echo "Whole-process costs against the process floor (\`limactl --version\`, median ${floor} ms):"
  echo
  echo "| command | median | ratio to the floor |"
  echo "|---|---|---|"
  echo "| list, 100 instances | ${list:-?} ms | $(ratio "$list") |"
  echo "| no-op apply, 100 converged instances | ${apply:-?} ms | $(ratio "$apply") |"
  echo
  cat "$tmp/body"
} >"$out"
echo "wrote $out" >&2
