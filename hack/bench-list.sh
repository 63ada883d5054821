#!/usr/bin/env bash
# Benchmark (not a test): `limactl list` and `limactl list --json` over 100
# stopped instances in a temp LIMA_HOME; whole process, median of RUNS runs.
# Usage: [LIMACTL=path/to/limactl] hack/bench-list.sh [RUNS]   (default 21)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-21}
# LIMACTL: an already built binary (e.g. to compare two builds) instead of a release build.
if [ -n "${LIMACTL:-}" ]; then
  bin=$(realpath "$LIMACTL")
else
  cargo build --release -q
  bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/limactl
fi
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export LIMA_HOME=$home HOME=$home
for i in $(seq -w 1 100); do
  mkdir -p "$home/vm$i"
  cat >"$home/vm$i/lima.yaml" <<YAML
images:
- location: /images/debian-12.qcow2
  arch: x86_64
cpus: 2
memory: 2GiB
disk: 20GiB
mounts:
- location: "~"
- location: /tmp/lima
  writable: true
provision:
- mode: system
  script: |
    #!/bin/sh
    echo hello
YAML
done

median_ms() { # command...
  local t=()
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

"$bin" list >/dev/null 2>&1 # warm the page cache
table=$(median_ms "$bin" list)
json=$(median_ms "$bin" list --json)
echo "limactl list        (100 instances): median ${table} ms over $runs runs"
echo "limactl list --json (100 instances): median ${json} ms over $runs runs"
filter=$(median_ms "$bin" list -q --filter '.disk == "21474836480"')
yq=$(median_ms "$bin" list --json --yq .name)
echo "limactl list -q --filter '.disk == \"21474836480\"' (100 instances): median ${filter} ms over $runs runs"
echo "limactl list --json --yq .name (100 instances): median ${yq} ms over $runs runs"
