#!/bin/bash
# Loads the kernel modules container networking and mounts rely on, early: a distro
# that deletes the running kernel's modules when an upgrade replaces the kernel
# (Arch) could not load them later. A module that is built in, or missing, is only
# reported.
set -u
for m in overlay fuse tun tap bridge veth br_netfilter ip_tables ip6_tables iptable_nat ip6table_nat \
	iptable_filter nf_tables x_tables xt_MASQUERADE xt_addrtype xt_comment xt_conntrack xt_mark \
	xt_multiport xt_nat xt_tcpudp; do
	if [ -d "/sys/module/$m" ]; then
		continue
	fi
	modprobe "$m" 2>/dev/null || echo "kernel module ${m} not loaded (fine when built in or unused)"
done
exit 0
