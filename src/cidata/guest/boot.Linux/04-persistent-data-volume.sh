#!/bin/bash
# ISO-booted images (Alpine's "virt" ISO) run from a RAM disk: nothing written to / would
# survive a reboot. Here the state directories live on an ext4 volume labelled
# `data-volume` on the instance disk, made on first boot (the disk is then blank) and
# bind-mounted over the RAM disk's directories on every boot.
set -eu -o pipefail
# Only Alpine boots this way so far; only a RAM-disk root needs it.
[ -f /etc/alpine-release ] || exit 0
[ "$(awk '$2 == "/" { print $3 }' /proc/mounts)" = tmpfs ] || exit 0

persisted="/etc /home /root /tmp /usr/local /var/lib"

# Mounts below the persisted directories (9p/virtiofs mounts of the host, …) would be
# hidden by the bind mounts: note them, unmount them, and mount them again afterwards.
remount=/run/lima-data-volume-remount.sh
printf '#!/bin/sh\nset -eu\n' >"$remount"
# >>> quoting (src/cidata/tests/shells.rs runs it extracted)
bs=\\ q="'"
# unescape PATH: PATH as /proc/mounts writes it, with a blank, tab, newline or backslash
# as \ooo (octal), decoded. printf %b reads octal as \0ooo: a 0 goes after each
# backslash. (A loop, not ${mnt//…}: how a backslash in its replacement is read
# differs between shells.)
unescape() {
	local rest="$1" out=
	while :; do
		case "$rest" in
		*"$bs"*)
			out="$out${rest%%"$bs"*}${bs}0"
			rest=${rest#*"$bs"}
			;;
		*) break ;;
		esac
	done
	printf '%b' "$out$rest"
}
# sq WORD: sq=WORD in single quotes, for the sh script (busybox printf has no %q).
sq() {
	local rest="$1"
	sq=
	while :; do
		case "$rest" in
		*"$q"*)
			sq="$sq${rest%%"$q"*}$q$bs$q$q"
			rest=${rest#*"$q"}
			;;
		*) break ;;
		esac
	done
	sq="$q$sq$rest$q"
}
# <<< quoting
while read -r dev mnt type opts _; do
	case "$mnt" in *"$bs"*) mnt=$(unescape "$mnt") ;; esac
	for dir in $persisted; do
		case "$mnt" in "$dir" | "$dir"/*) ;; *) continue ;; esac
		case "$type" in ext4 | tmpfs) continue ;; esac
		umount "$mnt"
		sq "$type"
		line="mount -t $sq"
		sq "$opts"
		line="$line -o $sq"
		sq "$dev"
		line="$line $sq"
		sq "$mnt"
		printf '%s %s\n' "$line" "$sq" >>"$remount"
	done
done </proc/mounts
chmod 0700 "$remount"

mkdir -p /mnt/data
# blkid, not /dev/disk/by-label: udev may be re-probing a partition growpart just changed.
volume=$(blkid | sed -n 's/^\([^:]*\):.*LABEL="data-volume".*/\1/p' | head -n1)
if [ -n "$volume" ]; then
	disk=${volume%[0-9]}
	if command -v growpart >/dev/null 2>&1 && command -v resize2fs >/dev/null 2>&1; then
		growpart "$disk" 1 || true
		udevadm settle || true
		if e2fsck -f -p "$volume"; then resize2fs "$volume" || true; fi
	fi
	mount -t ext4 "$volume" /mnt/data
	# Files this boot's network setup wrote belong to this boot.
	mkdir -p /mnt/data/etc/network
	cp /etc/network/interfaces /mnt/data/etc/network/ 2>/dev/null || true
	cp /etc/resolv.conf /mnt/data/etc/ 2>/dev/null || true
	[ -e /etc/localtime ] && cp -d /etc/localtime /mnt/data/etc/
	[ -f /etc/timezone ] && cp /etc/timezone /mnt/data/etc/
else
	# First boot: the first whole disk with no partitions and no mount becomes the volume.
	for disk in $(lsblk --list --noheadings --output name,type | awk '$2 == "disk" { print $1 }'); do
		lsblk --list --noheadings --output type "/dev/$disk" | grep -q part && continue
		grep -q "^/dev/$disk " /proc/mounts && continue
		echo 'type=83' | sfdisk --label dos "/dev/$disk"
		udevadm settle || true
		part=$(lsblk --list --noheadings --output name,type "/dev/$disk" | awk '$2 == "part" { print $1; exit }')
		mkfs.ext4 -L data-volume "/dev/$part"
		mount -t ext4 "/dev/$part" /mnt/data
		mkdir -p /mnt/data/apk/cache /etc/apk
		ln -sfn /mnt/data/apk/cache /etc/apk/cache
		for dir in $persisted; do
			mkdir -p "$dir" "/mnt/data$(dirname "$dir")"
			mv "$dir" "/mnt/data$(dirname "$dir")/"
		done
		sync
		break
	done
fi
for dir in $persisted; do
	if [ -d "/mnt/data$dir" ]; then
		mkdir -p "$dir"
		mount --bind "/mnt/data$dir" "$dir"
	fi
done
"$remount"
# The RAM disk lost the installed packages: reinstall them from the cache on the volume.
apk fix --no-network || true
