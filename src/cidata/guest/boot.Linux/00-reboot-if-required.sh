#!/bin/bash
# upgradePackages: when this boot's package upgrade asks for a reboot, reboot now.
# boot.sh then leaves /run/lima-boot-done unwritten; the next boot (same instance id)
# writes it.
set -eu
[ "${LIMA_CIDATA_UPGRADE_PACKAGES:-}" = 1 ] || exit 0
[ -e /run/reboot-required ] || exit 0
echo "packages ask for a reboot (/run/reboot-required): rebooting"
touch "${LIMA_REBOOT_REQUIRED}"
if command -v systemctl >/dev/null 2>&1; then
	systemctl reboot --no-block
else
	reboot
fi
