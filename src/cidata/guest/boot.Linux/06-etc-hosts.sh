#!/bin/bash
# host.lima.internal names the host (the slirp gateway). cloud-init (manage_etc_hosts)
# rewrites /etc/hosts at boot, so the entry is put back every time.
set -eu
gw=${LIMA_CIDATA_SLIRP_GATEWAY:-192.168.5.2}
tmp=$(mktemp /etc/.hosts.XXXXXX)
trap 'rm -f "$tmp"' EXIT
if [ -f /etc/hosts ]; then
	grep -v '[[:space:]]host\.lima\.internal\([[:space:]]\|$\)' /etc/hosts >"$tmp" || true
fi
printf '%s\thost.lima.internal\n' "$gw" >>"$tmp"
if ! cmp -s "$tmp" /etc/hosts; then
	chmod 0644 "$tmp"
	mv -f "$tmp" /etc/hosts
fi
