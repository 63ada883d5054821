#!/usr/bin/env bash
# Benchmark (not a test): how local a guest feels.
#  1. Port forwarding latency: a guest process opens a TCP listener on
#     127.0.0.1:PORT; we time from the request until a connection to
#     127.0.0.1:PORT on the host reaches it (guest agent poll + report +
#     `ssh -O forward`), and from closing it until the host port is refused.
#     TRIES tries (default 7), median and all values. Goal: <= 1 s
#     (Lima's agent ticks every 3 s).
#  2. UDP round trip through the forward (guest agent relay over the
#     virtio port): a guest echo server on 127.0.0.1:18090/udp, ROUNDS
#     sequential 32-byte echoes from the host's 127.0.0.1:18090 (default 50);
#     median, min and max, and datagrams lost (re-sent after 0.5 s).
#  3. Sequential read throughput of a 512 MiB file through each mount type
#     (reverse-sshfs, then 9p; one boot each; guest page cache dropped).
# Usage: hack/bench-portforward.sh [TRIES [ROUNDS]]
set -euo pipefail
cd "$(dirname "$0")/.."
tries=${1:-7}
rounds=${2:-50}
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

UDP_ECHO_PY='
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
'

# Waits for the forward, then times ROUNDS echoes; prints
# "median min max lost" (milliseconds).
UDP_CLIENT_PY='
import socket, statistics, sys, time
port, rounds = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
def echo(msg, timeout):
    s.settimeout(timeout)
    s.send(msg)
    while True:
        if s.recv(256) == msg:
            return
deadline = time.time() + 60
while True:
    try:
        echo(b"hello", 0.2)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("the UDP forward did not come up within 60 s")
        time.sleep(0.05)
rtts, lost = [], 0
for i in range(rounds):
    msg = b"%032d" % i
    while True:
        t0 = time.perf_counter()
        try:
            echo(msg, 0.5)
            break
        except socket.timeout:
            lost += 1
    rtts.append((time.perf_counter() - t0) * 1000)
print("%.2f %.2f %.2f %d" % (statistics.median(rtts), min(rtts), max(rtts), lost))
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

# UDP: an echo server in the guest, round trips timed on the host.
udp_port=18090
"$limactl" shell bench sh -c "nohup python3 -c '$UDP_ECHO_PY' $udp_port >/dev/null 2>&1 </dev/null &"
read -r udp_median udp_min udp_max udp_lost < <(python3 -c "$UDP_CLIENT_PY" "$udp_port" "$rounds")
echo "UDP: $rounds round trips, median $udp_median ms (min $udp_min, max $udp_max), $udp_lost lost" >&2

sshfs=$(throughput)
"$limactl" delete -f bench >/dev/null 2>&1

start 9p
ninep=$(throughput)
"$limactl" delete -f bench >/dev/null 2>&1

echo "guest port opened -> host forward usable:  median $(printf '%s\n' "${up[@]}" | median) s (${up[*]})"
echo "guest port closed -> host port refused:    median $(printf '%s\n' "${down[@]}" | median) s (${down[*]})"
echo "UDP echo round trip through the forward:   median ${udp_median} ms (min ${udp_min}, max ${udp_max}; ${rounds} rounds, ${udp_lost} lost)"
echo "sequential read, 512 MiB, reverse-sshfs:   ${sshfs} MiB/s"
echo "sequential read, 512 MiB, 9p:              ${ninep} MiB/s"
