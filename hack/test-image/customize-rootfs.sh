#!/bin/sh
# mmdebstrap --customize-hook: turns the freshly installed Debian 12 root directory
# ($1) into a small, fast-booting cloud-init guest for the test suite.
# Runs on the host against the directory; only depmod runs chrooted.
set -eu
root="$1"

# --- root filesystem: found by label in both disk layouts --------------------------
cat >"$root/etc/fstab" <<'FSTAB'
LABEL=lima-root / ext4 defaults,errors=remount-ro 0 1
FSTAB
echo debian >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
HOSTS
# Name resolution comes from systemd-resolved (DNS learnt by networkd over DHCP),
# never from the build host's /etc/resolv.conf.
rm -f "$root/etc/resolv.conf"
ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# --- cloud-init ----------------------------------------------------------------------
mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat >"$root/etc/cloud/cloud.cfg.d/90-lima-test-image.cfg" <<'CFG'
# Only the NoCloud seed (Lima's cidata); do not probe cloud metadata services.
datasource_list: [ NoCloud, None ]
system_info:
  network:
    renderers: [ networkd ]
# The default en_US.UTF-8 is not generated in this image and update-locale fails.
locale: C.UTF-8
# RSA host keys cost seconds under TCG.
ssh_genkeytypes: [ ed25519, ecdsa ]
no_ssh_fingerprints: true
ssh:
  emit_keys_to_console: false
grub_dpkg:
  enabled: false
CFG

# --- network: systemd-networkd, with a DHCP fallback when cloud-init wrote nothing ----
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/99-fallback-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
systemctl --root="$root" --quiet enable systemd-networkd.service systemd-resolved.service

# --- units that only slow a test boot down ---------------------------------------------
systemctl --root="$root" --quiet mask \
  apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
  e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
  fstrim.timer fstrim.service \
  systemd-timesyncd.service \
  getty@tty1.service \
  systemd-networkd-wait-online.service

# --- sshd ----------------------------------------------------------------------------
mkdir -p "$root/etc/ssh/sshd_config.d"
echo 'UseDNS no' >"$root/etc/ssh/sshd_config.d/90-lima-test-image.conf"

# --- kernel modules ----------------------------------------------------------------------
# udev would load kvm under `-cpu max`; nested KVM is useless and its init is slow.
cat >"$root/etc/modprobe.d/lima-test-image-blacklist.conf" <<'BL'
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
BL
# Drop driver trees a QEMU guest never needs (list in pruned-modules.txt; dpkg already
# skipped unpacking them). The initramfs was built before this and is unaffected.
prune_list="$(dirname "$0")/pruned-modules.txt"
for moddir in "$root"/lib/modules/*/; do
  [ -d "$moddir/kernel" ] || continue
  grep -v '^[[:space:]]*\(#\|$\)' "$prune_list" | while read -r sub; do
    rm -rf "${moddir}kernel/$sub"
  done
  kver=$(basename "$moddir")
  chroot "$root" depmod -a "$kver"
done

# The build ran dpkg without fsync; the guest itself should not.
if [ -f "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap" ]; then
  sed -i '/^force-unsafe-io$/d' "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
fi

# --- first-boot state: every instance gets its own ---------------------------------------
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/cloud/* "$root"/var/log/cloud-init*
