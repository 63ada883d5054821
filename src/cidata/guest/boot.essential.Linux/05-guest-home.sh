#!/bin/bash
# The guest user's home: cloud-init creates it with the user, but an image that already
# had the user (or a home left from another UID) needs help. Creates a missing home from
# /etc/skel and gives a home that is not the user's back to them.
set -eu
user=${LIMA_CIDATA_USER}
home=${LIMA_CIDATA_HOME}
if [ -z "${LIMA_USER_UID:-}" ] && ! id "$user" >/dev/null 2>&1; then
	echo "user ${user} does not exist: cloud-init did not create it (see /var/log/cloud-init.log)" >&2
	exit 1
fi
# (boot.sh looked the user up already.)
uid=${LIMA_USER_UID:-$(id -u "$user")}
gid=${LIMA_USER_GID:-$(id -g "$user")}
if [ "$uid" != "${LIMA_CIDATA_UID}" ]; then
	echo "WARNING: user ${user} has UID ${uid}, not ${LIMA_CIDATA_UID} as configured" >&2
fi
if [ ! -d "$home" ]; then
	echo "creating ${home}"
	mkdir -p "$home"
	cp -a /etc/skel/. "$home/" 2>/dev/null || true
	chown -R "${uid}:${gid}" "$home"
	chmod 0750 "$home"
elif [ "$(stat -c %u "$home")" != "$uid" ]; then
	echo "${home} belongs to UID $(stat -c %u "$home"); giving it to ${user}"
	chown -R "${uid}:${gid}" "$home"
fi
# Lima before v2 named the home /home/USER.linux: scripts written for either spelling find it.
case "$home" in
*.guest)
	legacy="${home%.guest}.linux"
	if [ ! -e "$legacy" ] && [ ! -L "$legacy" ]; then
		ln -s "${home##*/}" "$legacy"
	fi
	;;
esac
