#!/usr/bin/env bash
# Benchmark (not a test): what containerd costs, on the offline test image and archive.
#   boot:  `limactl start` to READY of the same image without containerd, then with
#          containerd.system and containerd.user (the archive unpacked and both started
#          on first boot), alternated RUNS times (default 1);
#   first: from READY to the first container's output (image import + `ctr run`), in
#          the containerd instance.
# Prints each run and the medians. Usage: hack/bench-containerd.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
cargo build -q --bin limactl
limactl=$(realpath "${CARGO_TARGET_DIR:-target}")/debug/limactl
template=$(hack/build-test-image.sh | tail -n1)
read -r archive digest < <(hack/build-test-containerd.sh | tail -n1)
image=$(dirname "$archive")/test-oci-image.tar
LIMA_GUESTAGENT=${LIMA_GUESTAGENT:-$(hack/build-guestagent.sh | tail -n1)}
export LIMA_GUESTAGENT
# VM boots on this machine take turns (the tests' lock: tests/it/common guest_lock).
exec 8>/tmp/lima-rs-smoke-boot.lock
flock 8
work=$(mktemp -d /tmp/bench-ctr-XXXXXX)
export LIMA_HOME=$work/lima
cleanup() {
  "$limactl" delete -f bench-off >/dev/null 2>&1 || true
  "$limactl" delete -f bench-on >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cat >"$work/off.yaml" <<EOF2
base: $template
containerd: {system: false, user: false}
EOF2
cat >"$work/on.yaml" <<EOF2
base: $template
containerd:
  system: true
  user: true
  archives: [{location: "$archive", arch: x86_64, digest: "$digest"}]
provision:
- mode: dependency
  skipDefaultDependencyResolution: true
  script: "#!/bin/sh\ntrue\n"
EOF2

: >"$work/off" && : >"$work/on" && : >"$work/first"
for i in $(seq 1 "$runs"); do
  for mode in off on; do
    t0=$(now)
    "$limactl" start --name "bench-$mode" "$work/$mode.yaml" >"$work/start.log" 2>&1 || { cat "$work/start.log" >&2; exit 1; }
    t=$(since "$t0")
    echo "$t" >>"$work/$mode"
    echo "run $i: containerd $mode: READY after ${t}s" >&2
    if [ "$mode" = on ]; then
      t0=$(now)
      "$limactl" shell bench-on sh -c 'cat >/tmp/img.tar' <"$image"
      "$limactl" shell bench-on sh -c 'sudo ctr images import /tmp/img.tar >/dev/null && sudo ctr run --rm docker.io/library/lima-test:latest first echo first-container' | grep -qx first-container
      t=$(since "$t0")
      echo "$t" >>"$work/first"
      echo "run $i: READY -> first container output: ${t}s" >&2
    fi
    "$limactl" delete -f "bench-$mode" >/dev/null 2>&1
  done
done
off=$(median <"$work/off") on=$(median <"$work/on") first=$(median <"$work/first")
echo "median READY without containerd: ${off}s"
echo "median READY with containerd (system+user, first boot): ${on}s (+$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.2f", b - a }')s)"
echo "median READY -> first container (import + ctr run): ${first}s"
