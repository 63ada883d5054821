#!/bin/sh
# Alpine's essentials, also in plain mode (the host agent needs sudo, public-key login
# and sshd TCP forwarding even then): the release's main and community repositories,
# sudo, a login that PAM-less sshd accepts for key auth, forwarding, pam_env for
# /etc/environment, and acpid so that `limactl stop` powers the guest off.
set -eu
[ -f /etc/alpine-release ] || exit 0
version=$(awk -F= '$1 == "VERSION_ID" { print $2 }' /etc/os-release)
case "$version" in
*_alpha* | *_beta*) branch=edge ;;
*.*.*) branch=v${version%.*} ;;
*) branch=edge ;;
esac
for repo in main community; do
	url="https://dl-cdn.alpinelinux.org/alpine/${branch}/${repo}"
	grep -qx "$url" /etc/apk/repositories || echo "$url" >>/etc/apk/repositories
done
command -v sudo >/dev/null 2>&1 || apk add sudo
# A locked password ('!') makes PAM-less sshd refuse even key logins; '*' does not.
usermod -p '*' "${LIMA_CIDATA_USER}"
sed -i -e 's/^AllowTcpForwarding no/AllowTcpForwarding yes/' -e 's/^#UsePAM no/UsePAM yes/' /etc/ssh/sshd_config
rc-service --ifstarted sshd reload
rc-update add acpid default
rc-service acpid start || true
