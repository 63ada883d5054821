#!/bin/bash
# containerd.system / containerd.user: installs the nerdctl-full archive from the cidata
# volume under guestInstallPrefix, then runs containerd (and BuildKit, when the archive
# has it) as system services and/or rootless for the guest user.
#
# Every boot runs this; it changes only what is not done yet. The archive is unpacked
# when its sha256 (LIMA_CIDATA_CONTAINERD_ARCHIVE_SHA256) differs from the one recorded at the last install
# (<prefix>/share/lima/nerdctl-full.sha256, rewritten only then), so a reboot with the
# same archive installs nothing and the services come back by themselves (enabled;
# the user's through lingering, see 20-rootless-base.sh).
set -eu
system=${LIMA_CIDATA_CONTAINERD_SYSTEM:-}
rootless=${LIMA_CIDATA_CONTAINERD_USER:-}
[ "$system" = 1 ] || [ "$rootless" = 1 ] || exit 0
if ! command -v systemctl >/dev/null 2>&1; then
	echo "containerd needs systemd, which this guest does not run: not installed" >&2
	exit 1
fi
archive=${LIMA_CIDATA_MNT}/${LIMA_CIDATA_CONTAINERD_ARCHIVE:-nerdctl-full.tgz}
if [ ! -f "$archive" ]; then
	echo "the containerd archive ${archive} is not on the cidata volume" >&2
	exit 1
fi
prefix=${LIMA_CIDATA_GUEST_INSTALL_PREFIX:-/usr/local}
user=${LIMA_CIDATA_USER}
home=${LIMA_CIDATA_HOME}
uid=${LIMA_USER_UID:-$(id -u "$user")}
export PATH="${prefix}/bin:${prefix}/sbin:${PATH}"
: "${CONTAINERD_NAMESPACE:=default}"
: "${CONTAINERD_SNAPSHOTTER:=overlayfs}"
runtime_dir=/run/user/${uid}
as_user() {
	sudo -iu "$user" "XDG_RUNTIME_DIR=${runtime_dir}" "PATH=${PATH}" \
		"CONTAINERD_NAMESPACE=${CONTAINERD_NAMESPACE}" "CONTAINERD_SNAPSHOTTER=${CONTAINERD_SNAPSHOTTER}" "$@"
}
setuptool=${prefix}/bin/containerd-rootless-setuptool.sh
user_unit=${home}/.config/systemd/user/containerd.service

# --- unpack ---------------------------------------------------------------------------
stamp=${prefix}/share/lima/nerdctl-full.sha256
# The host sends the archive's digest (hashing it here costs most of a second per boot
# under emulation); an older host's volume has none.
want=${LIMA_CIDATA_CONTAINERD_ARCHIVE_SHA256:-}
[ -n "$want" ] || want=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	echo "nerdctl-full archive ${want} already installed in ${prefix}"
else
	if [ -f "$stamp" ]; then
		# Another archive: stop what runs from the old binaries before replacing them.
		echo "replacing the nerdctl-full archive $(cat "$stamp") with ${want}"
		systemctl stop containerd.service buildkit.service 2>/dev/null || true
		if [ -e "$user_unit" ] && [ -x "$setuptool" ]; then
			as_user "$setuptool" uninstall || true
		fi
	fi
	echo "installing the nerdctl-full archive ${want} in ${prefix}"
	mkdir -p "$prefix"
	tar -C "$prefix" -xzf "$archive"
	# Libraries the archive ships under lib/ (found once the linker cache knows them).
	# (A glob that matches nothing stays as written: hence the test of what it gave.)
	libs=
	for lib in "${prefix}"/lib/*.so*; do
		if [ -e "$lib" ] || [ -L "$lib" ]; then
			libs=1
			break
		fi
	done
	if [ -n "$libs" ] && command -v ldconfig >/dev/null 2>&1; then
		ldconfig
	fi
	if command -v nerdctl >/dev/null 2>&1; then
		mkdir -p /etc/bash_completion.d
		nerdctl completion bash >/etc/bash_completion.d/nerdctl 2>/dev/null || true
	fi
	mkdir -p "${stamp%/*}"
	echo "$want" >"$stamp.tmp"
	mv -f "$stamp.tmp" "$stamp"
fi

# install_unit NAME: the archive's unit with its /usr/local paths pointed at the prefix,
# in /etc/systemd/system (which systemd reads for any prefix). Prints "changed" when it
# wrote a new one.
install_unit() {
	local src=${prefix}/lib/systemd/system/$1 dst=/etc/systemd/system/$1
	[ -f "$src" ] || return 1
	sed -e "s@/usr/local/@${prefix}/@g" "$src" >"$dst.tmp"
	if cmp -s "$dst.tmp" "$dst"; then
		rm -f "$dst.tmp"
	else
		mv -f "$dst.tmp" "$dst"
		echo changed
	fi
}

# --- system (rootful) -----------------------------------------------------------------
if [ "$system" = 1 ]; then
	if [ ! -e /etc/containerd/config.toml ]; then
		mkdir -p /etc/containerd
		{
			echo 'version = 2'
			if [ -x "${prefix}/bin/containerd-stargz-grpc" ]; then
				echo '[proxy_plugins.stargz]'
				echo '  type = "snapshot"'
				echo '  address = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"'
			fi
		} >/etc/containerd/config.toml
	fi
	# Unit names, blank-separated (busybox ash, Alpine's /bin/bash, has no arrays).
	units=containerd.service
	if [ -x "${prefix}/bin/buildkitd" ] && [ -f "${prefix}/lib/systemd/system/buildkit.service" ]; then
		if [ ! -e /etc/buildkit/buildkitd.toml ]; then
			mkdir -p /etc/buildkit
			printf '[worker.oci]\n  enabled = false\n\n[worker.containerd]\n  enabled = true\n  namespace = "%s"\n  snapshotter = "%s"\n' \
				"$CONTAINERD_NAMESPACE" "$CONTAINERD_SNAPSHOTTER" >/etc/buildkit/buildkitd.toml
		fi
		units="${units} buildkit.service"
	fi
	if [ -x "${prefix}/bin/containerd-stargz-grpc" ] && [ -f "${prefix}/lib/systemd/system/stargz-snapshotter.service" ]; then
		units="${units} stargz-snapshotter.service"
	fi
	changed=
	for u in $units; do
		if ! out=$(install_unit "$u"); then
			echo "the archive has no lib/systemd/system/${u}" >&2
			exit 1
		fi
		[ -n "$out" ] && changed=1
	done
	[ -n "$changed" ] && systemctl daemon-reload
	# shellcheck disable=SC2086 # $units is the list of unit names
	systemctl enable --now $units
fi

# --- user (rootless) ------------------------------------------------------------------
if [ "$rootless" = 1 ]; then
	config=${home}/.config/containerd/config.toml
	if [ ! -e "$config" ]; then
		as_user mkdir -p "${config%/*}"
		echo 'version = 2' >"$config.tmp"
		chown "$uid" "$config.tmp"
		mv -f "$config.tmp" "$config"
	fi
	if [ -e "$user_unit" ]; then
		# Installed on an earlier boot: lingering starts it; make sure it is up now.
		as_user systemctl --user start containerd.service
	else
		if [ ! -x "$setuptool" ]; then
			echo "the archive has no bin/containerd-rootless-setuptool.sh" >&2
			exit 1
		fi
		systemctl start "user@${uid}.service" || true
		waited=0
		until [ -e "${runtime_dir}/systemd/private" ]; do
			if [ "$waited" -ge 120 ]; then
				echo "the user manager of ${user} did not start (${runtime_dir}/systemd/private)" >&2
				exit 1
			fi
			sleep 1
			waited=$((waited + 1))
		done
		# Ubuntu 23.10+ restricts unprivileged user namespaces to profiles that allow them.
		profile=/etc/apparmor.d/lima-rootlesskit
		if [ ! -e "$profile" ] && [ -e /etc/apparmor.d/abi/4.0 ] && [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
			printf 'abi <abi/4.0>,\ninclude <tunables/global>\n\n%s/bin/rootlesskit flags=(unconfined) {\n  userns,\n}\n' "$prefix" >"$profile"
			systemctl restart apparmor.service || true
		fi
		# A D-Bus user bus lets the engines drive the user manager (systemd cgroup driver).
		if [ "$(as_user systemctl --user show --property=RefuseManualStart --value dbus 2>/dev/null)" = no ]; then
			as_user systemctl --user enable --now dbus 2>/dev/null || true
		fi
		as_user "$setuptool" install
		if [ -x "${prefix}/bin/buildkitd" ]; then
			as_user "$setuptool" install-buildkit-containerd
		fi
	fi
fi
