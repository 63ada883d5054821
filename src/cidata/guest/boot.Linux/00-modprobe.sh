#!/bin/bash
# Loads the kernel modules container networking and mounts rely on, early: a distro
# that deletes the running kernel's modules when an upgrade replaces the kernel
# (Arch) could not load them later. A module that is built in, or missing, is only
# reported.
set -u
missing=
for m in overlay fuse tun tap bridge veth br_netfilter ip_tables ip6_tables iptable_nat ip6table_nat \
	iptable_filter nf_tables x_tables xt_MASQUERADE xt_addrtype xt_comment xt_conntrack xt_mark \
	xt_multiport xt_nat xt_tcpudp; do
	[ -d "/sys/module/$m" ] || missing="$missing $m"
done
[ -n "$missing" ] || exit 0
# One modprobe for all of them: a process per module cost two seconds of a boot under
# emulation. It stops at the first module it cannot load, so then each one is tried
# alone, and those that still fail are named.
# shellcheck disable=SC2086 # $missing is a list of words
if ! modprobe -a $missing 2>/dev/null; then
	for m in $missing; do
		[ -d "/sys/module/$m" ] && continue
		modprobe "$m" 2>/dev/null || echo "kernel module ${m} not loaded (fine when built in or unused)"
	done
fi
exit 0
