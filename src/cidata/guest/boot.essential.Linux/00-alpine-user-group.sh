#!/bin/sh
# Alpine: root must be allowed to sudo (boot.sh runs the user's provision scripts with
# `sudo -iu`), and the image's own `alpine` user (UID 1000) must go so that cloud-init
# can create the configured user with that UID: remove it and boot again.
[ -f /etc/alpine-release ] || exit 0
sudoers=/etc/sudoers.d/00-root-user
if [ ! -f "$sudoers" ]; then
	mkdir -p /etc/sudoers.d
	echo 'root ALL=(ALL) NOPASSWD:ALL' >"$sudoers"
	chmod 0440 "$sudoers"
fi
if [ "${LIMA_CIDATA_USER}" != alpine ] && [ "$(id -u alpine 2>/dev/null)" = 1000 ]; then
	userdel alpine
	rmdir /home/alpine 2>/dev/null || true
	cloud-init clean --logs
	reboot
fi
exit 0
