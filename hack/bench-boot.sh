#!/usr/bin/env bash
# Benchmark (not a test): time to a usable guest, bare QEMU vs limactl, in one run.
#   bare:    qemu-system-x86_64 (same image, CPUs, memory, TCG flags, a cidata
#            ISO with a user and a key) until `ssh … true` succeeds;
#   limactl: `limactl start TEMPLATE` (a fresh instance) until
#            `limactl shell NAME true` succeeds.
# Alternates the two, RUNS times each (default 3), prints both medians and the ratio.
# Usage: hack/bench-boot.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -q
limactl=$PWD/target/release/limactl
template=$(hack/build-test-image.sh | tail -n1)
dir=$(dirname "$template")
work=$(mktemp -d /tmp/bench-boot-XXXXXX)
export LIMA_HOME=$work/lima
qpid=
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  "$limactl" delete -f bench >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

ssh-keygen -q -t ed25519 -N '' -C bench -f "$work/key"
mac=52:55:55:12:34:56
mkdir "$work/cidata"
printf 'instance-id: bench-%s\nlocal-hostname: bench\n' "$$" >"$work/cidata/meta-data"
cat >"$work/cidata/user-data" <<YAML
#cloud-config
users:
  - name: bench
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat "$work/key.pub")
YAML
printf 'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "%s"\n    dhcp4: true\n    set-name: eth0\n' "$mac" >"$work/cidata/network-config"
genisoimage -quiet -V cidata -J -R -o "$work/cidata.iso" "$work/cidata"

bare_once() {
  local port=$((20000 + RANDOM % 20000)) t0 t
  qemu-img create -q -f qcow2 -F qcow2 -b "$dir/debian-12-direct.qcow2" "$work/overlay.qcow2" 4G
  t0=$(now)
  qemu-system-x86_64 -machine q35,vmport=off -accel tcg,thread=multi,tb-size=512 -cpu max -smp 2 -m 2G \
    -drive "file=$work/overlay.qcow2,if=none,id=d0" -device virtio-blk-pci,drive=d0 \
    -drive "id=cdrom0,if=none,format=raw,readonly=on,file=$work/cidata.iso" \
    -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=cdrom0 \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device "virtio-net-pci,netdev=net0,mac=$mac" \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd" -append "$(cat "$dir/cmdline")" \
    -serial "file:$work/serial.log" -display none -nodefaults </dev/null >/dev/null 2>&1 &
  qpid=$!
  until ssh -q -i "$work/key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=2 bench@127.0.0.1 true </dev/null 2>/dev/null; do
    sleep 0.5
  done
  t=$(since "$t0")
  kill "$qpid"; wait "$qpid" 2>/dev/null || true; qpid=
  rm -f "$work/overlay.qcow2"
  echo "$t"
}

lima_once() {
  local t0 t
  t0=$(now)
  "$limactl" start --name bench "$template" >/dev/null 2>&1
  until "$limactl" shell bench true </dev/null >/dev/null 2>&1; do sleep 0.2; done
  t=$(since "$t0")
  "$limactl" delete -f bench >/dev/null 2>&1
  echo "$t"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bare=() lima=()
exec 8>/tmp/lima-rs-smoke-boot.lock
flock 8
for i in $(seq "$runs"); do
  b=$(bare_once); bare+=("$b")
  l=$(lima_once); lima+=("$l")
  echo "run $i: bare qemu $b s, limactl $l s" >&2
done
mb=$(printf '%s\n' "${bare[@]}" | median)
ml=$(printf '%s\n' "${lima[@]}" | median)
echo "bare qemu until ssh true:                 median ${mb} s (${bare[*]})"
echo "limactl start until limactl shell true:   median ${ml} s (${lima[*]})"
awk -v a="$ml" -v b="$mb" 'BEGIN { printf "ratio limactl/bare: %.2f\n", a / b }'
# What limactl's accelerator probe chose (bare QEMU above always runs TCG).
accel=$(grep -oE '"accel": *"[a-z]+"' "$LIMA_HOME/_cache/qemu-accel.json" 2>/dev/null | head -n1 | grep -oE '[a-z]+"$' | tr -d '"')
echo "accelerator: ${accel:-unknown} (limactl's probe; bare QEMU: tcg)"
