#!/bin/bash
# A guest user with a low UID counts as a system user to journald, whose user journals
# it then cannot read (`journalctl --user` fails). Membership of systemd-journal lets
# it; on distributions without that group this does nothing.
set -eu
[ "${LIMA_CIDATA_UID}" -le 1000 ] || exit 0
getent group systemd-journal >/dev/null 2>&1 || exit 0
id -nG "${LIMA_CIDATA_USER}" | tr ' ' '\n' | grep -qx systemd-journal && exit 0
usermod -aG systemd-journal "${LIMA_CIDATA_USER}"
