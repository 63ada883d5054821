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
# A transient service (systemd-run), started by this script on every boot: a unit
# file would need a daemon-reload, seconds under emulation, while the host waits.
# (A unit file left by an older version is restarted instead.)
unit=lima-guestagent.service
# shellcheck disable=SC2086 # args are words
if [ -f "/etc/systemd/system/${unit}" ] ||
	! systemd-run --quiet --no-block --collect --unit="$unit" --description=lima-guestagent \
		--property=Restart=on-failure --property=OOMScoreAdjust=-500 "$bin" $args 2>/dev/null; then
	# A unit file, or the transient unit of an earlier run this boot.
	systemctl restart --no-block "$unit"
fi
