#!/bin/bash
# Installs lima-guestagent from the cidata volume to <guestInstallPrefix>/bin and runs it
# as a systemd service talking to the host over the virtio port (or vsock). Skipped
# quietly when the volume carries no guest agent.
set -eu
src=${LIMA_CIDATA_MNT}/lima-guestagent
if [ ! -f "$src" ]; then
	echo "no lima-guestagent on the cidata volume: guest agent not installed"
	exit 0
fi
prefix=${LIMA_CIDATA_GUEST_INSTALL_PREFIX:-/usr/local}
bin=${prefix}/bin/lima-guestagent
mkdir -p "${prefix}/bin"
if [ ! -f "$bin" ] || ! cmp -s "$src" "$bin"; then
	install -m 0755 "$src" "$bin.tmp"
	mv -f "$bin.tmp" "$bin"
	echo "installed ${bin}"
fi
if [ ! -d /run/systemd/system ]; then
	echo "no systemd: ${bin} is installed but not started" >&2
	exit 0
fi
args="daemon"
if [ "${LIMA_CIDATA_VSOCK_PORT:-0}" != 0 ]; then
	args="${args} --vsock-port ${LIMA_CIDATA_VSOCK_PORT}"
elif [ -n "${LIMA_CIDATA_VIRTIO_PORT:-}" ]; then
	args="${args} --virtio-port ${LIMA_CIDATA_VIRTIO_PORT}"
fi
unit=/etc/systemd/system/lima-guestagent.service
tmp=$(mktemp /etc/systemd/system/.lima-guestagent.XXXXXX)
cat >"$tmp" <<UNIT
[Unit]
Description=lima-guestagent

[Service]
ExecStart=${bin} ${args}
Type=simple
Restart=on-failure
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$tmp"
mv -f "$tmp" "$unit"
systemctl daemon-reload
systemctl enable lima-guestagent.service
systemctl restart lima-guestagent.service
