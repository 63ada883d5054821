#!/bin/sh
# mmdebstrap --essential-hook: runs after the Essential packages are installed and
# before apt unpacks the kernel, so the first initramfs is already the small one.
# $1 is the root directory being built.
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/conf.d"
cat >"$root/etc/initramfs-tools/conf.d/lima-test-image.conf" <<'CONF'
# Only the modules listed in /etc/initramfs-tools/modules (plus their dependencies):
# the guest is always QEMU with virtio devices.
MODULES=list
COMPRESS=zstd
CONF
cat >"$root/etc/initramfs-tools/modules" <<'MODULES'
# Drivers the initramfs needs to find and mount the root filesystem on QEMU.
# Everything else (9p, fuse, sr_mod, ...) loads later from the root filesystem.
virtio_pci
virtio_blk
virtio_scsi
virtio_net
virtio_console
virtio_rng
ext4
MODULES
