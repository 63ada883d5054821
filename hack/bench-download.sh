#!/usr/bin/env bash
# Download throughput from a loopback HTTP server for a 1 GiB file with sha256
# verification: limactl's download path (examples/fetch.rs → lima::image)
# against `curl -o` followed by `sha256sum` of the same file, in one run.
# A benchmark, not a test: it prints numbers and asserts nothing.
#
#   hack/bench-download.sh [SIZE_MIB]     (default 1024)
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/lima-bench-download.XXXXXX")
SERVER_PID=
cleanup() {
	if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --example fetch
FETCH=target/release/examples/fetch

echo "== creating a ${SIZE_MIB} MiB file in $WORK"
mkdir -p "$WORK/srv"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/srv/big.img"
BYTES=$(stat -c %s "$WORK/srv/big.img")
DIGEST="sha256:$(sha256sum "$WORK/srv/big.img" | cut -d' ' -f1)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/srv" "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT/big.img"
for _ in $(seq 50); do
	curl -sfI "$URL" >/dev/null 2>&1 && break
	sleep 0.1
done

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$BYTES / ($2 - $1) / 1e6:.1f}')"; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "== curl -o + sha256sum"
t0=$(now)
curl -sf -o "$WORK/curl.out" "$URL"
t1=$(now)
GOT="sha256:$(sha256sum "$WORK/curl.out" | cut -d' ' -f1)"
t2=$(now)
[ "$GOT" = "$DIGEST" ] || { echo "curl: digest mismatch" >&2; exit 1; }
rm -f "$WORK/curl.out"
echo "curl -o:    $(secs "$t0" "$t1") s"
echo "sha256sum:  $(secs "$t1" "$t2") s"
CURL_RATE=$(rate "$t0" "$t2")
echo "combined:   $(secs "$t0" "$t2") s = $CURL_RATE MB/s"

echo "== limactl download path (cache + sha256 while streaming + copy to the destination)"
t0=$(now)
"$FETCH" "$URL" "$WORK/basedisk" --digest "$DIGEST" --cache "$WORK/cache" 2>/dev/null
t1=$(now)
LIMA_RATE=$(rate "$t0" "$t1")
echo "limactl:    $(secs "$t0" "$t1") s = $LIMA_RATE MB/s"
rm -rf "$WORK/cache" "$WORK/basedisk"

echo "== limactl, into the cache only (what curl -o does)"
t0=$(now)
"$FETCH" "$URL" unused --digest "$DIGEST" --cache "$WORK/cache" --cache-only 2>/dev/null
t1=$(now)
CACHE_RATE=$(rate "$t0" "$t1")
echo "cache-only: $(secs "$t0" "$t1") s = $CACHE_RATE MB/s"

echo
echo "curl+sha256sum: $CURL_RATE MB/s"
echo "limactl:        $LIMA_RATE MB/s  (ratio $(python3 -c "print(f'{$LIMA_RATE / $CURL_RATE:.2f}')")x; goal >= 0.9x)"
echo "limactl cache:  $CACHE_RATE MB/s  (ratio $(python3 -c "print(f'{$CACHE_RATE / $CURL_RATE:.2f}')")x)"
