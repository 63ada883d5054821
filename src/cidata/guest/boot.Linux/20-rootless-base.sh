#!/bin/bash
# What rootless container engines (rootless containerd here; Docker and Podman from the
# templates' provision scripts) need from the system, on every systemd guest as Lima
# does: sbin on the user's PATH, cgroup delegation to user managers, the sysctls and
# subordinate IDs of user namespaces, and a user manager that runs without a login
# (lingering) so that the user's services start at boot. Each step is skipped when done.
set -eu
command -v systemctl >/dev/null 2>&1 || exit 0

# cgroup v2: the user's manager may hand cgroup controllers to its services. Also run
# alone (`20-rootless-base.sh delegate`) from cloud-init's bootcmd, before sshd starts:
# a user manager started after the drop-in exists reads it, so the daemon-reload below
# (two seconds under emulation) is only needed when one ran before.
dropin=/etc/systemd/system/user@.service.d/lima.conf
dropin_new=
if [ ! -e "$dropin" ]; then
	mkdir -p "${dropin%/*}"
	printf '[Service]\nDelegate=yes\n' >"$dropin.tmp"
	mv -f "$dropin.tmp" "$dropin"
	dropin_new=1
fi
[ "${1:-}" = delegate ] && exit 0

user=${LIMA_CIDATA_USER}
home=${LIMA_CIDATA_HOME}
uid=${LIMA_USER_UID:-$(id -u "$user")}

# Shell builtins where they do the job: a process costs most of a tenth of a second
# while a guest under emulation boots, and this module runs on the way to Ready.
# has_line FILE PREFIX: a line of FILE starts with PREFIX.
has_line() {
	local line
	[ -f "$1" ] || return 1
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in "$2"*) return 0 ;; esac
	done <"$1"
	return 1
}

# iptables and mount.fuse3 live in sbin, which a user's PATH may lack. Kernels before
# 5.13 cannot do overlayfs in a user namespace: fuse-overlayfs is the snapshotter there.
old_kernel=
release=
read -r release </proc/sys/kernel/osrelease 2>/dev/null || release=$(uname -r)
major=${release%%.*}
minor=${release#*.}
minor=${minor%%[!0-9]*}
case "$major.$minor" in
*[!0-9.]* | .* | *.) ;; # not N.N: assume a recent kernel
*)
	if [ "$major" -lt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -lt 13 ]; }; then
		old_kernel=1
	fi
	;;
esac
# The files written, for one chown (the arguments: none were given but `delegate`).
set --
for f in .profile .bashrc .zshrc; do
	has_line "$home/$f" '# Lima BEGIN' && continue
	{
		echo '# Lima BEGIN'
		echo 'PATH="$PATH:/usr/sbin:/sbin"'
		echo 'export PATH'
		if [ -n "$old_kernel" ]; then
			echo 'CONTAINERD_SNAPSHOTTER=fuse-overlayfs'
			echo 'export CONTAINERD_SNAPSHOTTER'
		fi
		echo '# Lima END'
	} >>"$home/$f"
	set -- "$@" "$home/$f"
done
[ $# -eq 0 ] || chown "$uid" "$@"

# A user manager loaded before the drop-in existed (`show` loads one that is not).
# Only when this run wrote it: one written earlier (from bootcmd, before sshd and
# logind start, or by an earlier boot) predates every user manager of this boot.
if [ -n "$dropin_new" ] &&
	[ "$(systemctl show -p NeedDaemonReload --value "user@${uid}.service" 2>/dev/null)" != no ]; then
	systemctl daemon-reload
fi

# User namespaces for unprivileged users (Debian kernels before 5.10 gate them), ping
# and low ports from rootless network namespaces.
sysctl_conf=/etc/sysctl.d/99-lima.conf
if [ ! -e "$sysctl_conf" ]; then
	{
		[ -e /proc/sys/kernel/unprivileged_userns_clone ] && echo 'kernel.unprivileged_userns_clone=1'
		echo 'net.ipv4.ping_group_range = 0 2147483647'
		echo 'net.ipv4.ip_unprivileged_port_start=0'
	} >"$sysctl_conf.tmp"
	mv -f "$sysctl_conf.tmp" "$sysctl_conf"
	sysctl -q --system >/dev/null || sysctl -q -p "$sysctl_conf" || true
fi

# Subordinate IDs: 1Gi of them from 524288 (the range systemd-homed expects), or right
# above the user's own UID when that is higher.
first=524288
[ "$uid" -ge "$first" ] && first=$((uid + 1))
for f in /etc/subuid /etc/subgid; do
	has_line "$f" "${user}:" || echo "${user}:${first}:1073741824" >>"$f"
done

if [ ! -e "/var/lib/systemd/linger/${user}" ]; then
	# logind makes /run/systemd/users when it starts.
	[ -d /run/systemd/users ] || systemctl start systemd-logind.service
	loginctl enable-linger "$user"
fi
