#!/usr/bin/env bash
# Boots the images made by hack/build-test-image.sh once each under QEMU/TCG, the way
# Lima attaches things (virtio-blk overlay, cidata ISO on virtio-scsi, slirp with an SSH
# port forward), and checks the guest: SSH login, uname, sshfs/fuse3, 9p modules,
# cloud-init reaching "done", the root filesystem grown to the overlay's size.
#
# Usage: hack/test-image/smoke-boot.sh [TEMPLATE.yaml | IMAGE_DIR] [direct|uefi]...
#   No path: runs hack/build-test-image.sh (cached) and uses its output.
#   No layout: boots "direct" and then "uefi" (never two guests at once).
# Environment: FIRMWARE=uefi also boots the direct-kernel layout through OVMF (as Lima
#   does on x86_64); SSH_TIMEOUT (default 300) and CLOUD_INIT_TIMEOUT (default 300) in s;
#   KEEP=1 keeps the work directory (serial.log, overlay) for inspection.
# Prints one summary line per layout on stdout; details go to stderr. Exit status is
# non-zero if any check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf 'smoke-boot: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

target=${1:-}
[ $# -gt 0 ] && shift
if [ -z "$target" ]; then target=$("$here/../build-test-image.sh" | tail -n1); fi
if [ -f "$target" ]; then dir=$(dirname "$(readlink -f "$target")"); else dir=$(readlink -f "$target"); fi
[ -f "$dir/.done" ] || die "$dir is not a completed build of hack/build-test-image.sh"
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(direct uefi)

ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
ssh_timeout=${SSH_TIMEOUT:-300}
ci_timeout=${CLOUD_INIT_TIMEOUT:-300}
user=smoke
mac=52:55:55:12:34:56

# Never two TCG guests at once on this machine, even from two invocations.
exec 8>"${TMPDIR:-/tmp}/lima-rs-smoke-boot.lock"
flock 8

pick_port() {
  local p _
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  return 1
}

qpid=
work=
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  if [ -n "$work" ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

failures=0
boot_one() {
  local layout=$1 image port t0 t_ssh t_ci ok=1
  case "$layout" in
    direct) image="$dir/debian-12-direct.qcow2" ;;
    uefi) image="$dir/debian-12-uefi.qcow2" ;;
    *) die "unknown layout $layout (direct or uefi)" ;;
  esac
  work=$(mktemp -d "${TMPDIR:-/tmp}/smoke-boot-$layout.XXXXXX")
  ssh-keygen -q -t ed25519 -N '' -C smoke-boot -f "$work/key"

  mkdir "$work/cidata"
  printf 'instance-id: smoke-%s-%s\nlocal-hostname: lima-smoke\n' "$layout" "$$" >"$work/cidata/meta-data"
  cat >"$work/cidata/user-data" <<EOF
#cloud-config
users:
  - name: $user
    uid: "501"
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat "$work/key.pub")
manage_etc_hosts: true
EOF
  cat >"$work/cidata/network-config" <<EOF
version: 2
ethernets:
  eth0:
    match:
      macaddress: "$mac"
    dhcp4: true
    set-name: eth0
EOF
  genisoimage -quiet -V cidata -J -R -o "$work/cidata.iso" "$work/cidata"
  qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$work/overlay.qcow2" 4G

  port=$(pick_port) || die "no free port"
  local args=(
    -machine q35,vmport=off -accel tcg,thread=multi,tb-size=512 -cpu max -smp 2 -m 2G
    -drive "file=$work/overlay.qcow2,if=none,id=d0" -device virtio-blk-pci,drive=d0
    -drive "id=cdrom0,if=none,format=raw,readonly=on,file=$work/cidata.iso"
    -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=cdrom0
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device "virtio-net-pci,netdev=net0,mac=$mac"
    -serial "file:$work/serial.log" -display none -nodefaults -no-user-config
  )
  local how=$layout
  if [ "$layout" = uefi ] || [ "${FIRMWARE:-}" = uefi ]; then
    cp "$ovmf_vars" "$work/vars.fd"
    args+=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf_code" -drive "if=pflash,format=raw,file=$work/vars.fd")
    [ "$layout" = direct ] && how="direct+ovmf"
  fi
  if [ "$layout" = direct ]; then
    args+=(-kernel "$dir/vmlinuz" -initrd "$dir/initrd" -append "$(cat "$dir/cmdline")")
  fi

  log "$how: booting $image (ssh port $port, work dir $work)"
  t0=$EPOCHREALTIME
  qemu-system-x86_64 "${args[@]}" </dev/null >"$work/qemu.log" 2>&1 &
  qpid=$!

  local ssh_cmd=(ssh -q -i "$work/key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ConnectTimeout=5 "$user@127.0.0.1")
  until "${ssh_cmd[@]}" true </dev/null 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then
      log "$how: qemu exited early:"; cat "$work/qemu.log" >&2; tail -n 30 "$work/serial.log" >&2 || true
      qpid=; failures=$((failures + 1)); return 0
    fi
    if [ "$(elapsed "$t0" | cut -d. -f1)" -ge "$ssh_timeout" ]; then
      log "$how: no SSH after $ssh_timeout s; serial log tail:"; tail -n 40 "$work/serial.log" >&2 || true
      failures=$((failures + 1)); kill "$qpid"; wait "$qpid" 2>/dev/null || true; qpid=; return 0
    fi
    sleep 1
  done
  t_ssh=$(elapsed "$t0")
  log "$how: ssh OK after $t_ssh s"

  if "${ssh_cmd[@]}" "timeout $ci_timeout cloud-init status --wait" </dev/null >"$work/ci-status" 2>&1; then
    t_ci=$(elapsed "$t0")
  else
    t_ci="FAILED($(tr '\n' ' ' <"$work/ci-status"))"; ok=0
  fi
  log "$how: cloud-init: $(tr -s '.\n' ' ' <"$work/ci-status") after $t_ci s"

  # shellcheck disable=SC2016
  if ! "${ssh_cmd[@]}" 'set -e
      echo "uname: $(uname -a)"
      test -x /sbin/mount.fuse3; echo "sshfs: $(command -v sshfs) ($(sshfs --version 2>&1 | grep -i "^sshfs version"))"
      sudo modprobe 9p; sudo modprobe 9pnet_virtio
      echo "9p: $(lsmod | awk "/^9p|^9pnet/ {print \$1}" | tr "\n" " ")"
      echo "root: $(df -h / | tail -n1)"
      size=$(df -B1M --output=size / | tail -n1 | tr -d " "); [ "$size" -gt 3500 ] || { echo "root fs not grown: ${size}M"; exit 1; }
      echo "hostname: $(hostname); resolv: $(grep -m1 ^nameserver /etc/resolv.conf || true)"
      echo "boot: $(systemd-analyze 2>/dev/null | head -n1 || true)"
      failed=$(systemctl --failed --no-legend --plain | awk "{print \$1}" | tr "\n" " ")
      echo "failed units: ${failed:-none}"
      [ -z "$failed" ]
      sudo grep -E "WARNING|Traceback" /var/log/cloud-init.log | head -n 5 | sed "s/^/cloud-init log: /" || true
      sudo cloud-init status --long | grep -q "^status: done"
    ' </dev/null >&2; then
    log "$how: guest checks FAILED"; ok=0
  fi

  "${ssh_cmd[@]}" 'sudo systemctl poweroff' </dev/null >/dev/null 2>&1 || true
  local i
  for i in $(seq 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$qpid" 2>/dev/null; then log "$how: no poweroff after 60 s, killing qemu"; kill "$qpid"; fi
  wait "$qpid" 2>/dev/null || true
  qpid=

  [ "$ok" -eq 1 ] || failures=$((failures + 1))
  echo "$how: ssh ${t_ssh} s, cloud-init done ${t_ci} s, checks $([ "$ok" -eq 1 ] && echo ok || echo FAILED)"
  if [ "${KEEP:-0}" = 1 ]; then log "$how: kept $work"; else rm -rf "$work"; fi
  work=
}

for layout in "${layouts[@]}"; do boot_one "$layout"; done
[ "$failures" -eq 0 ] || die "$failures layout(s) failed"
