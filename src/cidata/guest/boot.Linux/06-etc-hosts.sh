#!/bin/bash
# host.lima.internal names the host (the slirp gateway). cloud-init (manage_etc_hosts)
# rewrites /etc/hosts at boot, so the entry is put back every time.
set -eu
gw=${LIMA_CIDATA_SLIRP_GATEWAY:-192.168.5.2}
# Builtins only (but for the final mv): processes are slow while the guest boots.
want="" have=""
if [ -f /etc/hosts ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		have+=$line$'\n'
		[[ $line =~ [[:space:]]host\.lima\.internal([[:space:]]|$) ]] && continue
		want+=$line$'\n'
	done </etc/hosts
fi
want+=$gw$'\thost.lima.internal\n'
if [ "$want" != "$have" ]; then
	tmp=/etc/.hosts.lima.$$
	trap 'rm -f "$tmp"' EXIT
	(umask 022 && printf '%s' "$want" >"$tmp")
	mv -f "$tmp" /etc/hosts
fi
