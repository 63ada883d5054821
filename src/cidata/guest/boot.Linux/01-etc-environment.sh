#!/bin/bash
# Replaces the #LIMA-START..#LIMA-END block of /etc/environment with etc_environment
# (lima.yaml env + proxy settings), then writes the instance id to /run/lima-ssh-ready:
# from then on a new SSH session sees the final environment. The host agent keeps as
# its long-lived ControlMaster only a connection made after that marker, so sessions
# are not ended here (ending them races the host agent's first probe session:
# pam_systemd then waits two minutes for a session logind already dropped).
# Runs first from cloud-init's bootcmd (before sshd starts), then again in boot.sh:
# the marker is rewritten only when something changed, as its time tells the host
# which connections logged in before it.
set -eu
# boot.sh started from bootcmd runs right after bootcmd ran this script: done.
if [ "${LIMA_BOOT_EARLY:-}" = 1 ] && read -r marker </run/lima-ssh-ready 2>/dev/null &&
	[ "$marker" = "${LIMA_CIDATA_IID}" ]; then
	exit 0
fi
src=${LIMA_CIDATA_MNT}/etc_environment
dst=/etc/environment
tmp=$(mktemp /etc/.environment.XXXXXX)
trap 'rm -f "$tmp"' EXIT
if [ -f "$dst" ]; then
	sed '/^#LIMA-START$/,/^#LIMA-END$/d' "$dst" >"$tmp"
fi
cat "$src" >>"$tmp"
changed=0
if ! cmp -s "$tmp" "$dst"; then
	chmod 0644 "$tmp"
	mv -f "$tmp" "$dst"
	echo "updated ${dst}"
	changed=1
fi
if [ "$changed" = 1 ] || [ "$(cat /run/lima-ssh-ready 2>/dev/null)" != "${LIMA_CIDATA_IID}" ]; then
	printf '%s\n' "${LIMA_CIDATA_IID}" >/run/lima-ssh-ready.tmp
	mv -f /run/lima-ssh-ready.tmp /run/lima-ssh-ready
fi
