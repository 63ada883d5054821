#!/bin/bash
# reverse-sshfs mounts: the host agent mounts them over SSH as the guest user, so the
# mount points must exist and belong to that user. (9p and virtiofs mounts are in
# cloud-init's `mounts:`.)
set -eu
[ "${LIMA_CIDATA_MOUNTTYPE:-}" = reverse-sshfs ] || exit 0
n=${LIMA_CIDATA_MOUNTS:-0}
[ "$n" -gt 0 ] || exit 0
user=${LIMA_CIDATA_USER}
gid=${LIMA_USER_GID:-$(id -g "$user")}
for i in $(seq 0 $((n - 1))); do
	# $LIMA_CIDATA_MOUNTS_<i>_MOUNTPOINT, through eval: busybox ash (Alpine's /bin/bash)
	# has no ${!v}. (i comes from seq: v is a name.)
	mp=
	eval "mp=\${LIMA_CIDATA_MOUNTS_${i}_MOUNTPOINT-}"
	case "$mp" in '' | /) continue ;; esac
	if mountpoint -q "$mp"; then
		continue
	fi
	mkdir -p "$mp"
	chown "${user}:${gid}" "$mp"
done
