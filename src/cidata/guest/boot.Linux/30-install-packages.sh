#!/bin/bash
# Runs the `mode: dependency` provision scripts (a failure ends this module), then
# installs what the enabled features need and the image lacks (sshfs for reverse-sshfs
# mounts, iptables for the host resolver), unless skipDefaultDependencyResolution.
set -u
if [ -d "${LIMA_CIDATA_MNT}/provision.dependency" ]; then
	for f in "${LIMA_CIDATA_MNT}"/provision.dependency/*; do
		[ -f "$f" ] || continue
		lima-provision.sh dependency "${f##*/}" "$f" || exit 1
	done
fi
[ "${LIMA_CIDATA_SKIP_DEFAULT_DEPENDENCY_RESOLUTION:-}" = 1 ] && exit 0

# The package names, blank-separated (busybox ash, Alpine's /bin/bash, has no arrays);
# none has a blank or a glob character, so $pkgs is split into them unquoted.
pkgs=
if [ "${LIMA_CIDATA_MOUNTTYPE:-}" = reverse-sshfs ] && [ "${LIMA_CIDATA_MOUNTS:-0}" -gt 0 ]; then
	command -v sshfs >/dev/null 2>&1 || pkgs="${pkgs:+$pkgs }sshfs"
fi
if [ "${LIMA_CIDATA_UDP_DNS_LOCAL_PORT:-0}" != 0 ] || [ "${LIMA_CIDATA_TCP_DNS_LOCAL_PORT:-0}" != 0 ]; then
	command -v iptables >/dev/null 2>&1 || pkgs="${pkgs:+$pkgs }iptables"
fi
[ -n "$pkgs" ] || exit 0
echo "installing ${pkgs}"
# shellcheck disable=SC2086 # $pkgs is the list of package names
if command -v apt-get >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs
elif command -v dnf >/dev/null 2>&1; then
	dnf install -y $pkgs
elif command -v yum >/dev/null 2>&1; then
	yum install -y $pkgs
elif command -v zypper >/dev/null 2>&1; then
	zypper --non-interactive install -y $pkgs
elif command -v pacman >/dev/null 2>&1; then
	pacman -Sy --noconfirm $pkgs
elif command -v apk >/dev/null 2>&1; then
	apk add $pkgs
else
	echo "no known package manager: install ${pkgs} in the image" >&2
	exit 1
fi
