#!/bin/bash
# Replaces the #LIMA-START..#LIMA-END block of /etc/environment with etc_environment
# (lima.yaml env + proxy settings), then writes the instance id to /run/lima-ssh-ready:
# from then on a new SSH session sees the final environment. Sessions opened before a
# change are ended so that the host agent reconnects with the new one.
set -eu
src=${LIMA_CIDATA_MNT}/etc_environment
dst=/etc/environment
tmp=$(mktemp /etc/.environment.XXXXXX)
trap 'rm -f "$tmp"' EXIT
if [ -f "$dst" ]; then
	sed '/^#LIMA-START$/,/^#LIMA-END$/d' "$dst" >"$tmp"
fi
cat "$src" >>"$tmp"
if ! cmp -s "$tmp" "$dst"; then
	chmod 0644 "$tmp"
	mv -f "$tmp" "$dst"
	echo "updated ${dst}"
	if command -v loginctl >/dev/null 2>&1; then
		loginctl terminate-user "${LIMA_CIDATA_USER}" >/dev/null 2>&1 || true
	fi
fi
printf '%s\n' "${LIMA_CIDATA_IID}" >/run/lima-ssh-ready.tmp
mv -f /run/lima-ssh-ready.tmp /run/lima-ssh-ready
