#!/bin/bash
# A guest user with a low UID counts as a system user to journald, whose user journals
# it then cannot read (`journalctl --user` fails). Membership of systemd-journal lets
# it; on distributions without that group this does nothing.
set -eu
[ "${LIMA_CIDATA_UID}" -le 1000 ] || exit 0
user=${LIMA_CIDATA_USER}
# /etc/group read with builtins (processes are slow while a guest under emulation
# boots); a group only NSS knows is looked up with getent.
line=
while IFS= read -r l; do
	case "$l" in systemd-journal:*)
		line=$l
		break
		;;
	esac
done </etc/group
[ -n "$line" ] || line=$(getent group systemd-journal 2>/dev/null) || exit 0
case ",${line#*:*:*:}," in
*",${user},"*) exit 0 ;;
esac
usermod -aG systemd-journal "$user"
