#!/usr/bin/env bash
# Installs, with apt, everything limactl and its test suite need on a Debian machine.
# Idempotent: packages already present are not reinstalled, and apt is only updated
# when something is missing.
set -euo pipefail

packages=(
  # the QEMU driver
  qemu-system-x86 qemu-utils ovmf
  # SSH to the guest, and the host side of reverse-sshfs mounts
  openssh-client openssh-sftp-server rsync
  # building the test guest image (hack/build-test-image.sh) without loop devices
  mmdebstrap e2fsprogs fdisk dosfstools mtools grub-efi-amd64-bin grub-common zstd
  # test oracles: reading cidata.iso back with a real ISO reader
  genisoimage xorriso
  # the static guest agent (hack/build-guestagent.sh): glibc's static libc, and `file` to check it
  libc6-dev file
  # misc tools used by scripts and tests
  curl socat procps iproute2 ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed" >&2
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
