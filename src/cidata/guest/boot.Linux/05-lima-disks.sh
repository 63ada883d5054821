#!/bin/bash
# Additional disks (lima.yaml additionalDisks, LIMA_CIDATA_DISK_<i>_*): a blank disk is
# formatted once when FORMAT is true (GPT with one partition, a filesystem labelled
# lima-NAME); the filesystem is mounted at /mnt/lima-NAME through /etc/fstab (swap is
# enabled instead). A disk that already holds data is never formatted.
set -u
n=${LIMA_CIDATA_DISKS:-0}
[ "$n" -gt 0 ] || exit 0

# get INDEX FIELD: prints $LIMA_CIDATA_DISK_<INDEX>_FIELD (empty when unset). Through eval:
# busybox ash (Alpine's /bin/bash) has no ${!v}; v is checked to be a name first.
get() {
	local v="LIMA_CIDATA_DISK_${1}_$2"
	case "$v" in *[!A-Za-z0-9_]*) return 0 ;; esac
	eval "printf '%s' \"\${$v-}\""
}
settle() {
	if command -v udevadm >/dev/null 2>&1; then
		udevadm settle --timeout=10 || true
	fi
}

# fstab_set NAME [LINE]: replaces the entry of disk NAME (marked by a comment line above it).
fstab_set() {
	local marker="# lima additional disk: $1" tmp
	tmp=$(mktemp /etc/.fstab.XXXXXX)
	awk -v m="$marker" 'skip { skip = 0; next } $0 == m { skip = 1; next } { print }' /etc/fstab >"$tmp"
	if [ $# -gt 1 ]; then
		printf '%s\n%s\n' "$marker" "$2" >>"$tmp"
	fi
	if cmp -s "$tmp" /etc/fstab; then
		rm -f "$tmp"
		return 0
	fi
	chmod 0644 "$tmp"
	mv -f "$tmp" /etc/fstab
	fstab_changed=1
}

partition() {
	local dev=$1
	if command -v sfdisk >/dev/null 2>&1; then
		printf 'label: gpt\n,,L\n' | sfdisk --quiet "$dev"
	elif command -v sgdisk >/dev/null 2>&1; then
		sgdisk --zap-all --new=1:0:0 --typecode=1:8300 "$dev"
	elif command -v parted >/dev/null 2>&1; then
		parted -s "$dev" mklabel gpt mkpart lima 1MiB 100%
	else
		echo "no sfdisk, sgdisk or parted in the guest: cannot partition $dev" >&2
		return 1
	fi
}

wait_for() {
	local i=0
	while [ ! -b "$1" ] && [ "$i" -lt 20 ]; do
		settle
		sleep 0.5
		i=$((i + 1))
	done
	[ -b "$1" ]
}

settle
rc=0
fstab_changed=0
for i in $(seq 0 $((n - 1))); do
	name=$(get "$i" NAME)
	dev=/dev/$(get "$i" DEVICE)
	format=$(get "$i" FORMAT)
	fstype=$(get "$i" FSTYPE)
	fsargs=$(get "$i" FSARGS)
	[ -n "$fstype" ] || fstype=ext4
	label=lima-${name}
	mnt=/mnt/lima-${name}
	part=${dev}1
	if [ ! -b "$dev" ]; then
		echo "disk ${name}: ${dev} does not exist" >&2
		rc=1
		continue
	fi
	if [ ! -e "/dev/disk/by-label/${label}" ] && [ "$format" = true ]; then
		if blkid -p "$dev" >/dev/null 2>&1 || [ -b "$part" ]; then
			echo "disk ${name}: ${dev} holds data but no filesystem labelled ${label}; not formatting it" >&2
		else
			echo "disk ${name}: formatting ${dev} (${fstype}, label ${label})"
			if ! partition "$dev" || ! wait_for "$part"; then
				echo "disk ${name}: partitioning ${dev} failed" >&2
				rc=1
				continue
			fi
			# shellcheck disable=SC2086 # FSARGS is a space-separated argument list
			case "$fstype" in
			swap) mkswap -L "$label" $fsargs "$part" ;;
			*) "mkfs.${fstype}" $fsargs -L "$label" "$part" ;;
			esac || {
				echo "disk ${name}: mkfs.${fstype} failed" >&2
				rc=1
				continue
			}
			settle
		fi
	fi
	target=$part
	[ -b "$target" ] || target=$dev
	if [ -e "/dev/disk/by-label/${label}" ]; then
		target=$(readlink -f "/dev/disk/by-label/${label}")
	fi
	uuid=$(blkid -p -o value -s UUID "$target" 2>/dev/null || true)
	type=$(blkid -p -o value -s TYPE "$target" 2>/dev/null || true)
	if [ -z "$uuid" ] || [ -z "$type" ]; then
		echo "disk ${name}: no filesystem on ${target}; not mounting it" >&2
		rc=1
		continue
	fi
	# Grow the partition and filesystem after `limactl disk resize` (best effort).
	if [ "$target" = "$part" ] && command -v growpart >/dev/null 2>&1; then
		if growpart "$dev" 1 >/dev/null 2>&1; then
			echo "disk ${name}: partition grown"
			case "$type" in ext2 | ext3 | ext4) resize2fs "$part" || true ;; esac
		fi
	fi
	if [ "$type" = swap ]; then
		fstab_set "$name" "UUID=${uuid} none swap sw,nofail 0 0"
		swapon "UUID=${uuid}" 2>/dev/null || true
		continue
	fi
	mkdir -p "$mnt"
	fstab_set "$name" "UUID=${uuid} ${mnt} ${type} defaults,nofail 0 2"
	[ "$fstab_changed" = 1 ] && [ -d /run/systemd/system ] && systemctl daemon-reload
	fstab_changed=0
	if ! mountpoint -q "$mnt"; then
		mount "$mnt" || {
			echo "disk ${name}: cannot mount ${target} at ${mnt}" >&2
			rc=1
			continue
		}
	fi
	case "$type" in xfs) xfs_growfs "$mnt" >/dev/null 2>&1 || true ;; btrfs) btrfs filesystem resize max "$mnt" >/dev/null 2>&1 || true ;; esac
	echo "disk ${name}: ${target} mounted at ${mnt}"
done
exit "$rc"
