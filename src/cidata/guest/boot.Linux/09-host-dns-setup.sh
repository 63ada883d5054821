#!/bin/bash
# hostResolver: when the host agent serves DNS, send the guest's queries to the slirp
# DNS address (LIMA_CIDATA_SLIRP_DNS:53) to the host agent's ports on the gateway.
set -eu
udp=${LIMA_CIDATA_UDP_DNS_LOCAL_PORT:-0}
tcp=${LIMA_CIDATA_TCP_DNS_LOCAL_PORT:-0}
[ "$udp" != 0 ] || [ "$tcp" != 0 ] || exit 0
if ! command -v iptables >/dev/null 2>&1; then
	echo "iptables is not installed: the host resolver cannot be used" >&2
	exit 1
fi
dns=${LIMA_CIDATA_SLIRP_DNS}
gw=${LIMA_CIDATA_SLIRP_GATEWAY}
iptables -t nat -N LIMADNS 2>/dev/null || iptables -t nat -F LIMADNS
for chain in PREROUTING OUTPUT; do
	iptables -t nat -C "$chain" -j LIMADNS 2>/dev/null || iptables -t nat -I "$chain" 1 -j LIMADNS
done
if [ "$udp" != 0 ]; then
	iptables -t nat -A LIMADNS -d "$dns" -p udp --dport 53 -j DNAT --to-destination "${gw}:${udp}"
fi
if [ "$tcp" != 0 ]; then
	iptables -t nat -A LIMADNS -d "$dns" -p tcp --dport 53 -j DNAT --to-destination "${gw}:${tcp}"
fi
