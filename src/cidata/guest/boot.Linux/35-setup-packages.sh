#!/bin/bash
# reverse-sshfs: sshfs runs as the guest user with -o allow_other, which fuse allows only
# with user_allow_other in /etc/fuse.conf. Then the instance id goes to
# /run/lima-fuse-ready for the host agent.
set -eu
[ "${LIMA_CIDATA_MOUNTTYPE:-}" = reverse-sshfs ] || exit 0
[ "${LIMA_CIDATA_MOUNTS:-0}" -gt 0 ] || exit 0
conf=/etc/fuse.conf
[ -e /etc/fuse3.conf ] && [ ! -e "$conf" ] && conf=/etc/fuse3.conf
if ! grep -q '^[[:space:]]*user_allow_other' "$conf" 2>/dev/null; then
	if grep -q '^#[[:space:]]*user_allow_other' "$conf" 2>/dev/null; then
		sed -i 's/^#[[:space:]]*user_allow_other/user_allow_other/' "$conf"
	else
		echo user_allow_other >>"$conf"
	fi
fi
printf '%s\n' "${LIMA_CIDATA_IID}" >/run/lima-fuse-ready.tmp
mv -f /run/lima-fuse-ready.tmp /run/lima-fuse-ready
