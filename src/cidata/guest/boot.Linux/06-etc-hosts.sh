#!/bin/bash
# host.lima.internal names the host (the slirp gateway). cloud-init (manage_etc_hosts)
# rewrites /etc/hosts at boot, so the entry is put back every time.
set -eu
gw=${LIMA_CIDATA_SLIRP_GATEWAY:-192.168.5.2}
# Builtins only (but for the final mv): processes are slow while the guest boots.
# (Busybox ash, Alpine's /bin/bash, has no `+=` and no `[[ =~ ]]`.)
nl='
'
want="" have=""
if [ -f /etc/hosts ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		have=$have$line$nl
		# A line naming host.lima.internal (after a blank, then a blank or the end).
		case "$line" in
		*[[:space:]]host.lima.internal | *[[:space:]]host.lima.internal[[:space:]]*) continue ;;
		esac
		want=$want$line$nl
	done </etc/hosts
fi
want=$want$gw$'\t'host.lima.internal$nl
if [ "$want" != "$have" ]; then
	tmp=/etc/.hosts.lima.$$
	trap 'rm -f "$tmp"' EXIT
	(umask 022 && printf '%s' "$want" >"$tmp")
	mv -f "$tmp" /etc/hosts
fi
