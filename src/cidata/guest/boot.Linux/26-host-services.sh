#!/bin/bash
# /run/host-services holds sockets the host forwards into the guest (ssh-agent), private
# to the guest user.
set -eu
user=${LIMA_CIDATA_USER}
install -d -m 0700 -o "$user" -g "${LIMA_USER_GID:-$(id -g "$user")}" /run/host-services
