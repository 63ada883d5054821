#!/usr/bin/env bash
# Benchmark (not a test): how local a guest feels.
#  1. Port forwarding latency: a guest process opens a TCP listener on
#     127.0.0.1:PORT; we time from the request until a connection to
#     127.0.0.1:PORT on the host reaches it (guest agent poll + report +
#     `ssh -O forward`), and from closing it until the host port is refused.
#     TRIES tries (default 7), median and all values. Goal: <= 1 s
#     (Lima's agent ticks every 3 s).
#  2. Sequential read throughput of a 512 MiB file through each mount type
#     (reverse-sshfs, then 9p; one boot each; guest page cache dropped).
# Usage: hack/bench-portforward.sh [TRIES]
set -euo pipefail
cd "$(dirname "$0")/.."
tries=${1:-7}
cargo build --release -q --bin limactl
limactl=$PWD/target/release/limactl
LIMA_GUESTAGENT=$(hack/build-guestagent.sh | tail -n1)
export LIMA_GUESTAGENT
template=$(hack/build-test-image.sh | tail -n1)
work=$(mktemp -d /tmp/bench-pf-XXXXXX)
export LIMA_HOME=$work/lima
cleanup() {
  [ -n "${GUEST_PID:-}" ] && kill "$GUEST_PID" 2>/dev/null
  "$limactl" delete -f bench >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mkdir -p "$work/share"
head -c 512M /dev/urandom >"$work/share/big"

start() { # MOUNTTYPE
  printf 'base: %s\nmountType: %s\nmounts:\n- location: %s\n  mountPoint: /mnt/share\n' \
    "$template" "$1" "$work/share" >"$work/bench.yaml"
  "$limactl" start --name bench "$work/bench.yaml" >/dev/null 2>&1
}

# Reads the file in the guest once, caches dropped; prints MiB/s.
throughput() {
  "$limactl" shell bench sh -c \
    'sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null; dd if=/mnt/share/big of=/dev/null bs=1M 2>&1 | tail -n1' |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) secs = $(i - 1); printf "%.1f", $1 / 1048576 / secs }'
}

# The guest side: opens/closes listeners on request, acknowledges each.
GUEST_PY='
import socket, sys, threading
socks = {}
def serve(s):
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            return
        c.sendall(b"x")
        c.close()
for line in sys.stdin:
    cmd, port = line.split()
    port = int(port)
    if cmd == "open":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(16)
        socks[port] = s
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    else:
        s = socks.pop(port)
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    print(cmd, port, flush=True)
'

# A connection to 127.0.0.1:PORT that gets the guest's byte.
reaches() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && IFS= read -r -n1 -t 1 b <&3 && [ \"\$b\" = x ]" 2>/dev/null
}
refused() { ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

exec 8>/tmp/lima-rs-smoke-boot.lock
flock 8

start reverse-sshfs
coproc GUEST { "$limactl" shell bench python3 -u -c "$GUEST_PY"; }
up=() down=()
for i in $(seq "$tries"); do
  port=$((18100 + i))
  t0=$(now)
  echo "open $port" >&"${GUEST[1]}"
  read -r _ <&"${GUEST[0]}"
  until reaches "$port"; do sleep 0.01; done
  u=$(since "$t0")
  t0=$(now)
  echo "close $port" >&"${GUEST[1]}"
  read -r _ <&"${GUEST[0]}"
  until refused "$port"; do sleep 0.01; done
  d=$(since "$t0")
  up+=("$u") down+=("$d")
  echo "try $i: port $port usable after $u s, gone $d s after closing" >&2
done
eval "exec ${GUEST[1]}>&-"
wait "$GUEST_PID" 2>/dev/null || true
sshfs=$(throughput)
"$limactl" delete -f bench >/dev/null 2>&1

start 9p
ninep=$(throughput)
"$limactl" delete -f bench >/dev/null 2>&1

echo "guest port opened -> host forward usable:  median $(printf '%s\n' "${up[@]}" | median) s (${up[*]})"
echo "guest port closed -> host port refused:    median $(printf '%s\n' "${down[@]}" | median) s (${down[*]})"
echo "sequential read, 512 MiB, reverse-sshfs:   ${sshfs} MiB/s"
echo "sequential read, 512 MiB, 9p:              ${ninep} MiB/s"
