#!/usr/bin/env bash
# Soak (not run by CI: it boots a VM CYCLES times): one VM started and
# stopped CYCLES times (default 20) under the watch daemon, by flipping its
# runStrategy between Always and Halted. After every cycle it counts what the
# daemon holds (threads, open descriptors), what is left of the host agents
# and QEMUs (processes), and the sockets and pid files in the instance
# directory; it fails when any of them grows.
# Usage: [LIMACTL=path/to/limactl] hack/soak.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-20}
# LIMACTL: an already built binary (e.g. the tests' debug build) instead of a release build.
if [ -n "${LIMACTL:-}" ]; then
  bin=$(realpath "$LIMACTL")
else
  cargo build --release -q
  bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/limactl
fi
template=$(hack/build-test-image.sh | tail -n1) # before HOME changes
LIMA_GUESTAGENT=${LIMA_GUESTAGENT:-$(hack/build-guestagent.sh | tail -n1)}
export LIMA_GUESTAGENT
work=$(mktemp -d /tmp/soak-XXXXXX)
export LIMA_HOME=$work/lima HOME=$work
dpid=
cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null
  "$bin" stop -f vm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
exec 8>/tmp/lima-rs-smoke-boot.lock # one guest at a time with the tests
flock 8

src=$work/src
mkdir -p "$src"
want() { printf 'base: %s\nrunStrategy: %s\n' "$template" "$1" >"$src/vm.yaml.tmp" && mv "$src/vm.yaml.tmp" "$src/vm.yaml"; }
want Halted
"$bin" apply --watch --prune --resync 5s -f "$src" 2>"$work/daemon.log" &
dpid=$!
until [ -e "$LIMA_HOME/vm/diffdisk" ]; do sleep 0.2; done

count() {
  local threads fds agents qemus socks
  threads=$(ls /proc/$dpid/task | wc -l)
  fds=$(ls /proc/$dpid/fd | wc -l)
  # Host agents of this LIMA_HOME only (tests elsewhere may run an instance "vm" too).
  agents=0
  for p in $(pgrep -f "limactl.* hostagent vm" || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "LIMA_HOME=$LIMA_HOME"; then
      agents=$((agents + 1))
    fi
  done
  qemus=$(pgrep -fc "qemu-system.*$LIMA_HOME/vm/" || true)
  socks=$(find "$LIMA_HOME/vm" -maxdepth 1 \( -name '*.sock' -o -name '*.pid' \) | wc -l)
  echo "$threads $fds $agents $qemus $socks"
}
read -r t0 f0 _ _ _ < <(count)
echo "before: daemon threads $t0, descriptors $f0"
for i in $(seq 1 "$cycles"); do
  want Always
  until "$bin" status --json vm 2>/dev/null | grep -q '"type":"Ready","status":"True"'; do sleep 0.5; done
  want Halted
  until "$bin" list --json vm | grep -q '"status":"Stopped"'; do sleep 0.5; done
  sleep 2 # the daemon's next reconcile, its status write
  read -r t f a q s < <(count)
  echo "cycle $i: daemon threads $t, descriptors $f; host agents $a, QEMUs $q; sockets and pid files $s"
  if [ "$a" != 0 ] || [ "$q" != 0 ] || [ "$s" != 0 ]; then
    echo "soak: something outlived its VM after cycle $i" >&2
    exit 1
  fi
  if [ "$t" -gt "$t0" ] || [ "$f" -gt "$f0" ]; then
    echo "soak: the daemon grew (threads $t0 → $t, descriptors $f0 → $f) after cycle $i" >&2
    exit 1
  fi
done
echo "soak: $cycles start/stop cycles, nothing leaked"
