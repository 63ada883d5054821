#!/usr/bin/env bash
# Benchmark (not a test) of the watch daemon (`limactl apply -f DIR --watch`):
#  1. file written → its reconcile started (first step event), median of RUNS files;
#  2. daemon RSS once it manages 100 instances (created, Halted);
#  3. with --vm: host agent RSS of a running VM, and VM killed (SIGKILL QEMU) →
#     a new QEMU started by the daemon (first failure: relaunched at once).
# Usage: hack/bench-watch.sh [--vm] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
vm=0
[ "${1:-}" = --vm ] && { vm=1; shift; }
runs=${1:-11}
cargo build --release -q
bin=$PWD/target/release/limactl
[ "$vm" = 1 ] && template=$(hack/build-test-image.sh | tail -n1) # before HOME changes
work=$(mktemp -d /tmp/bench-watch-XXXXXX)
export LIMA_HOME=$work/lima HOME=$work
dpid=
cleanup() {
  # The daemon goes first, and is waited for: alive, it would relaunch the VM
  # (runStrategy Always) that the loop below stops.
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null || true; fi
  # Every instance, by name (LIMA_HOME also holds _cache and the like); one that
  # cannot be stopped must not keep the others running.
  for name in $("$bin" list -q 2>/dev/null); do "$bin" stop -f "$name" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
qemu-img create -q -f qcow2 "$work/tiny.qcow2" 64M
src=$work/src
mkdir -p "$src"
"$bin" apply --watch --prune -f "$src" 2>"$work/daemon.log" &
dpid=$!
sleep 1
yaml() { printf 'images:\n- location: %s\n  arch: x86_64\nrunStrategy: Halted\ncpus: 1\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {user: false, system: false}\n' "$work/tiny.qcow2"; }

lat=()
for i in $(seq -w 1 "$runs"); do
  t0=$(date +%s.%N)
  yaml >"$src/lat$i.yaml"
  until [ -s "$LIMA_HOME/lat$i/reconcile.log" ]; do sleep 0.01; done
  t1=$(head -n1 "$LIMA_HOME/lat$i/reconcile.log" | python3 -c 'import json,sys,datetime; print(datetime.datetime.fromisoformat(json.loads(sys.stdin.read())["time"][:26]+"+00:00").timestamp())' 2>/dev/null || date +%s.%N)
  lat+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
  sleep 0.5
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "file written → reconcile started: median $(printf '%s\n' "${lat[@]}" | median) ms over $runs files (the 50 ms debounce included) (${lat[*]})"

for i in $(seq -w 1 100); do yaml >"$src/fleet$i.yaml"; done
until [ "$(ls -d "$LIMA_HOME"/fleet*/diffdisk 2>/dev/null | wc -l)" -ge 100 ]; do sleep 0.5; done
sleep 3
echo "daemon RSS with $(ls -d "$LIMA_HOME"/*/ | wc -l) instances: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$dpid/status)"

if [ "$vm" = 1 ]; then
  exec 8>/tmp/lima-rs-smoke-boot.lock
  flock 8
  printf 'base: %s\nrunStrategy: Always\n' "$template" >"$src/vm.yaml"
  until "$bin" status --json vm 2>/dev/null | grep -q '"type":"Ready","status":"True"'; do sleep 0.5; done
  ha=$("$bin" list --format '{{.HostAgentPID}}' vm)
  qemu=$("$bin" list --format '{{.DriverPID}}' vm)
  echo "host agent RSS of a running VM: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024} /RssAnon/ {printf " (%.1f MiB private; the rest is shared file-backed pages)", $2/1024}' /proc/$ha/status)"
  t0=$(date +%s.%N)
  kill -9 "$qemu"
  until p=$(cat "$LIMA_HOME/vm/qemu.pid" 2>/dev/null) && [ -n "$p" ] && [ "$p" != "$qemu" ] && kill -0 "$p" 2>/dev/null; do sleep 0.02; done
  echo "VM killed → new QEMU running: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s (first failure)"
fi
