#!/usr/bin/env bash
# Benchmark (not a test) of the declarative layer, whole process:
#  - a no-op `limactl apply -f DIR` over 100 converged (created, Halted) instances;
#  - `limactl diff -f DIR` over 1000 instance files (all to be created).
# Median of RUNS runs each (default 11).
# Usage: hack/bench-apply.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
cargo build --release -q
bin=$PWD/target/release/limactl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LIMA_HOME=$work/lima HOME=$work
qemu-img create -q -f qcow2 "$work/tiny.qcow2" 64M
mkfiles() { # DIR COUNT
  mkdir -p "$1"
  for i in $(seq -w 1 "$2"); do
    cat >"$1/vm$i.yaml" <<YAML
images:
- location: $work/tiny.qcow2
  arch: x86_64
runStrategy: Halted
cpus: 1
memory: 1GiB
disk: 1GiB
mounts: []
containerd: {user: false, system: false}
YAML
  done
}
mkfiles "$work/fleet100" 100
mkfiles "$work/fleet1000" 1000
"$bin" apply -f "$work/fleet100" >/dev/null 2>&1

median_ms() {
  local t=() s e
  for _ in $(seq "$runs"); do
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    e=$(date +%s%N)
    t+=($(((e - s) / 1000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
noop=$(median_ms "$bin" apply -f "$work/fleet100")
diff=$(median_ms "$bin" diff -f "$work/fleet1000")
echo "no-op apply, 100 converged instances: median ${noop} ms over $runs runs"
echo "diff, 1000 instance files:            median ${diff} ms over $runs runs"
