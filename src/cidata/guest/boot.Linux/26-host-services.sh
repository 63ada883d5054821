#!/bin/bash
# /run/host-services holds sockets the host forwards into the guest (ssh-agent), private
# to the guest user.
set -eu
user=${LIMA_CIDATA_USER}
mkdir -p /run/host-services
chmod 0700 /run/host-services
chown "${user}:$(id -g "$user")" /run/host-services
