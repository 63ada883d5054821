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
  # promtool, which checks the daemon's /metrics exposition in the tests
  prometheus
  # Git sources (-f git::…) and their tests; `script` runs the pseudo-terminal tests
  git bsdutils
  # `limactl autostart` (systemctl --user) and its test (systemd-analyze verify)
  systemd
  # pip, for the test tools that have no Debian package (pip_tools below)
  python3-pip
  # the shells `limactl completion zsh|fish` is tested in
  zsh fish
  # the shells the guest boot scripts are checked in (src/cidata/tests/shells.rs):
  # busybox ash is Alpine's /bin/sh (and /bin/bash), dash Debian's /bin/sh
  busybox dash
)

# The binaries the project runs, each with the package that provides it (dpkg-deb:
# hack/build-test-containerd.sh unpacks the .debs it fetches with apt-get download).
binaries=(
  qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils ssh:openssh-client
  scp:openssh-client /usr/lib/openssh/sftp-server:openssh-sftp-server rsync:rsync
  mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs sfdisk:fdisk mkfs.vfat:dosfstools
  mcopy:mtools grub-mkimage:grub-common xorriso:xorriso isoinfo:genisoimage
  zstd:zstd file:file curl:curl socat:socat ip:iproute2 promtool:prometheus
  git:git script:bsdutils systemctl:systemd systemd-analyze:systemd dpkg-deb:dpkg
  zsh:zsh fish:fish busybox:busybox dash:dash
)
# Test tools from PyPI (no Debian package), `BINARY:REQUIREMENT`: vncdo
# (vncdotool) is the real VNC client of the VNC test (tests/it/e2e_snapshot.rs).
pip_tools=(vncdo:vncdotool==1.4.2)
firmware=(/usr/share/OVMF/OVMF_CODE.fd:ovmf /usr/share/OVMF/OVMF_VARS.fd:ovmf)
# Absolute paths are looked up under this root: only its test sets it.
root=${LIMA_DEPS_ROOT:-}

# Prints, one a line, "WHAT (package PKG)" for each promised binary or file
# that is not there. PATH decides for bare names (sbin directories too, which
# a non-root PATH may lack).
absent_tools() {
  local entry bin pkg
  for entry in "${binaries[@]}" "${firmware[@]}"; do
    bin=${entry%%:*} pkg=${entry##*:}
    if [[ $bin == /* ]]; then
      [ -e "$root$bin" ] || echo "$bin (package $pkg)"
    elif ! command -v "$bin" >/dev/null 2>&1 && ! [ -x "$root/usr/sbin/$bin" ] && ! [ -x "$root/sbin/$bin" ]; then
      echo "$bin (package $pkg)"
    fi
  done
}

# Packages to (re)install: not installed according to dpkg, or installed but
# a binary they provide is gone (replaced or removed under another name).
missing_packages() {
  local p line
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$p"
    fi
  done
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    line=${line##*(package }
    echo "${line%)}"
  done < <(absent_tools)
}

# The final check, alone: `hack/install-deps.sh --check` installs nothing.
verify() {
  local absent entry
  mapfile -t absent < <(absent_tools)
  for entry in "${pip_tools[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || absent+=("${entry%%:*} (pip ${entry#*:})")
  done
  if [ ${#absent[@]} -gt 0 ]; then
    echo "install-deps: error: missing: ${absent[*]}; run hack/install-deps.sh (as root or with sudo)" >&2
    return 1
  fi
}

if [ "${1:-}" = --check ]; then
  verify
  echo "install-deps: every tool checked" >&2
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
updated=false
install() {
  echo "install-deps: installing $*" >&2
  if ! $updated; then
    "${sudo_cmd[@]}" apt-get update -qq
    updated=true
  fi
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt may remove a package already installed to satisfy another one (a backported
# qemu-utils goes when the distribution's qemu-system-x86 comes in), so look again
# after each round; the second round installs the distribution's matching version.
for round in 1 2 3; do
  mapfile -t missing < <(missing_packages | sort -u)
  if [ ${#missing[@]} -eq 0 ]; then
    break
  fi
  if [ "$round" -eq 3 ]; then
    echo "install-deps: error: still missing after two rounds: ${missing[*]}" >&2
    verify || true
    exit 1
  fi
  install "${missing[@]}"
done

# PyPI test tools, once apt has brought pip (Debian 12 marks its Python as
# externally managed: then pip needs --break-system-packages).
for entry in "${pip_tools[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 && continue
  echo "install-deps: installing ${entry#*:} with pip" >&2
  "${sudo_cmd[@]}" python3 -m pip install --quiet "${entry#*:}" 2>/dev/null ||
    "${sudo_cmd[@]}" python3 -m pip install --quiet --break-system-packages "${entry#*:}"
done

# Check every binary promised, not only the package database.
verify
echo "install-deps: all ${#packages[@]} packages installed; every tool checked" >&2
