#!/usr/bin/env bash
# Benchmark (not a test), one VM of the test image:
#  1. resume vs cold boot: `limactl start` until `limactl shell NAME true`
#     succeeds, from a fresh instance (cold) and after `limactl suspend`
#     (resume; suspended once cloud-init has finished), RUNS times each (default 3);
#     medians and the ratio (goal <= 0.05);
#     also how long `limactl suspend` takes and the size of the saved state;
#  2. `limactl shell NAME true` vs `ssh -F <inst>/ssh.config lima-NAME true`,
#     median of 11 each;
# (Mount throughput and forward latency: hack/bench-portforward.sh.)
# Usage: [LIMACTL=path] hack/bench-guest.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
if [ -n "${LIMACTL:-}" ]; then
  limactl=$(realpath "$LIMACTL")
else
  cargo build --release -q
  limactl=$(realpath "${CARGO_TARGET_DIR:-target}")/release/limactl
fi
template=$(hack/build-test-image.sh | tail -n1)
work=$(mktemp -d /tmp/bench-guest-XXXXXX)
export LIMA_HOME=$work/lima
cleanup() {
  "$limactl" delete -f bench >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
until_shell() { until "$limactl" shell bench true </dev/null >/dev/null 2>&1; do sleep 0.2; done; }
mkdir -p "$work/share"
# A reverse-sshfs mount, so that the resume re-establishes one as users' would.
set_mount=".mountType = \"reverse-sshfs\" | .mounts = [{\"location\": \"$work/share\", \"writable\": true}]"

exec 8>/tmp/lima-rs-smoke-boot.lock
flock 8
cold=() resume=() suspend=()
for i in $(seq "$runs"); do
  "$limactl" create --name bench --set "$set_mount" "$template" >/dev/null 2>&1
  t0=$(now)
  "$limactl" start bench >/dev/null 2>&1
  until_shell
  c=$(since "$t0"); cold+=("$c")
  # Suspended once the guest has settled: Ready comes before cloud-init's final stage,
  # and a state saved in the middle of it resumes into that work (4.3 s vs 2.9 s measured).
  "$limactl" shell bench sh -c 'cloud-init status --wait >/dev/null; echo 42 > /dev/shm/state' </dev/null
  t0=$(now)
  "$limactl" suspend bench >/dev/null 2>&1
  s=$(since "$t0"); suspend+=("$s")
  size=$(du -m "$LIMA_HOME/bench/vmstate" | cut -f1)
  t0=$(now)
  "$limactl" start bench >/dev/null 2>&1
  until_shell
  r=$(since "$t0"); resume+=("$r")
  [ "$("$limactl" shell bench cat /dev/shm/state </dev/null)" = 42 ] || { echo "bench-guest: state lost on resume" >&2; exit 1; }
  echo "run $i: cold boot $c s, suspend $s s (${size} MiB), resume $r s" >&2
  [ "$i" = "$runs" ] || "$limactl" delete -f bench >/dev/null 2>&1
done
mc=$(printf '%s\n' "${cold[@]}" | median)
mr=$(printf '%s\n' "${resume[@]}" | median)
ms=$(printf '%s\n' "${suspend[@]}" | median)
echo "cold boot until limactl shell true:  median ${mc} s (${cold[*]})"
echo "resume until limactl shell true:     median ${mr} s (${resume[*]})"
echo "limactl suspend:                     median ${ms} s (${suspend[*]}), state ${size} MiB"
awk -v a="$mr" -v b="$mc" 'BEGIN { printf "ratio resume/cold boot: %.3f\n", a / b }'

median_ms() {
  local t=() s e
  for _ in $(seq 11); do
    s=$(date +%s%N)
    "$@" </dev/null >/dev/null 2>&1 || true
    e=$(date +%s%N)
    t+=($(((e - s) / 1000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
sh=$(median_ms "$limactl" shell bench true)
ssh=$(median_ms ssh -F "$LIMA_HOME/bench/ssh.config" lima-bench true)
echo "limactl shell bench true:            median ${sh} ms"
echo "ssh -F ssh.config lima-bench true:   median ${ssh} ms"
awk -v a="$sh" -v b="$ssh" 'BEGIN { printf "ratio shell/ssh: %.2f\n", a / b }'

