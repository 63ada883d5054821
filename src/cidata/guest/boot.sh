#!/bin/bash
# Lima boot script (limactl, Rust implementation). cloud-init runs it as root on every
# boot through /var/lib/cloud/scripts/per-boot/00-lima.boot.sh, which mounts the cidata
# volume and exports LIMA_CIDATA_MNT. Everything printed here ends up in
# /var/log/cloud-init-output.log (and on the serial console).
#
# Steps: load lima.env, param.env and etc_environment; run boot.essential.<OS>/*.sh,
# then boot.<OS>/*.sh (skipped in plain mode); then the provision steps data, yq,
# system (as root) and user (as the guest user). Each provision step leaves
# /run/lima-provision/<index>.status and .log (util/lima-provision.sh). A failing module
# or provision script does not stop the others; the exit status is 1 if any failed.
# Last, unless a reboot is pending, the instance id goes to /run/lima-boot-done.
set -u

# The time through bash's own strftime: a `date` process per line costs a tenth of
# a second while a guest under emulation boots. Same format as `date -Iseconds`.
log() {
	local now tz
	printf -v now '%(%Y-%m-%dT%H:%M:%S)T' -1
	printf -v tz '%(%z)T' -1
	printf 'LIMA %s%s:%s| %s\n' "$now" "${tz:0:3}" "${tz:3}" "$*"
}

OS=$(uname -s)
RUN=/run
[ "$OS" = Linux ] || RUN=/var/run

# It may be started twice per boot: early, from cloud-init's bootcmd through
# systemd-run (LIMA_BOOT_EARLY=1, so the instance is ready about when sshd is),
# and by the per-boot hook of cloud-init's final stage. Only one run does the
# work; the other waits for it and returns its exit status.
exec 9>"$RUN/lima-boot.lock"
flock 9
LIMA_IID_NOW=$(sed -n 's/^LIMA_CIDATA_IID=//p' "${LIMA_CIDATA_MNT:-/nonexistent}/lima.env" 2>/dev/null)
if [ -n "$LIMA_IID_NOW" ] && [ -f "$RUN/lima-boot-ran" ] && [ "$(cut -d' ' -f1 "$RUN/lima-boot-ran")" = "$LIMA_IID_NOW" ]; then
	exit "$(cut -d' ' -f2 "$RUN/lima-boot-ran")"
fi
if [ "${LIMA_BOOT_EARLY:-}" = 1 ]; then
	exec >>/var/log/cloud-init-output.log 2>&1
fi
rm -f "$RUN/lima-boot-done"
export LIMA_REBOOT_REQUIRED="$RUN/lima-reboot-required"
rm -f "$LIMA_REBOOT_REQUIRED"

if [ -z "${LIMA_CIDATA_MNT:-}" ] || [ ! -f "${LIMA_CIDATA_MNT}/lima.env" ]; then
	log "ERROR: the cidata volume is not mounted at LIMA_CIDATA_MNT=${LIMA_CIDATA_MNT:-}"
	exit 1
fi

# KEY=value lines, values unquoted (lima.env, param.env).
load_env_file() {
	local line
	[ -f "$1" ] || return 0
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
		*=*) export "${line?}" ;;
		esac
	done <"$1"
}

# /etc/environment syntax, as pam_env reads it: leading blanks and `export ` are
# ignored, `#` starts a comment line, one pair of surrounding quotes is removed.
load_etc_environment() {
	local line key val
	[ -f "$1" ] || return 0
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line#"${line%%[![:space:]]*}"}
		case "$line" in
		'' | '#'*) continue ;;
		esac
		line=${line#export }
		case "$line" in
		*=*) ;;
		*) continue ;;
		esac
		key=${line%%=*}
		val=${line#*=}
		case "$val" in
		\"*\") val=${val#\"} val=${val%\"} ;;
		\'*\') val=${val#\'} val=${val%\'} ;;
		esac
		case "$key" in
		[A-Za-z_]*) export "$key=$val" ;;
		esac
	done <"$1"
}

load_env_file "${LIMA_CIDATA_MNT}/lima.env"
load_env_file "${LIMA_CIDATA_MNT}/param.env"
load_etc_environment "${LIMA_CIDATA_MNT}/etc_environment"
export PATH="${LIMA_CIDATA_MNT}/util:${PATH}"
export LIMA_PROVISION_DIR="$RUN/lima-provision"
rm -rf "$LIMA_PROVISION_DIR"
mkdir -p "$LIMA_PROVISION_DIR"
chmod 0755 "$LIMA_PROVISION_DIR"

log "boot.sh starting (instance ${LIMA_CIDATA_IID:-?}, ${LIMA_CIDATA_NAME:-?})"
CODE=0

# The guest user's UID and GID (exported for the modules as LIMA_USER_UID and
# LIMA_USER_GID): from /etc/passwd with builtins, else `id` (NSS users).
lookup_user() {
	local name _pw uid gid rest
	while IFS=: read -r name _pw uid gid rest; do
		if [ "$name" = "$1" ]; then
			export LIMA_USER_UID=$uid LIMA_USER_GID=$gid
			return 0
		fi
	done </etc/passwd
	uid=$(id -u "$1" 2>/dev/null) && gid=$(id -g "$1" 2>/dev/null) || return 1
	export LIMA_USER_UID=$uid LIMA_USER_GID=$gid
}

# Started early, cloud-init may not have created the user yet.
waited=0
until lookup_user "${LIMA_CIDATA_USER}" && [ -d "${LIMA_CIDATA_HOME}" ]; do
	if [ "$waited" -ge 1500 ]; then
		log "WARNING: user ${LIMA_CIDATA_USER} or ${LIMA_CIDATA_HOME} did not appear"
		break
	fi
	sleep 0.2
	waited=$((waited + 1))
done

run_modules() {
	local dir=$1 f
	[ -d "$dir" ] || return 0
	for f in "$dir"/*.sh; do
		[ -f "$f" ] || continue
		log "Executing $f"
		if ! "$f" </dev/null; then
			log "WARNING: Failed to execute $f"
			CODE=1
		fi
	done
}

run_modules "${LIMA_CIDATA_MNT}/boot.essential.${OS}"
if [ "${LIMA_CIDATA_PLAIN:-}" = 1 ]; then
	log "Plain mode: skipping ${LIMA_CIDATA_MNT}/boot.${OS}"
	# Nothing rewrites /etc/environment in plain mode; SSH sessions are final already.
	printf '%s\n' "${LIMA_CIDATA_IID}" >"$RUN/lima-ssh-ready.tmp" && mv -f "$RUN/lima-ssh-ready.tmp" "$RUN/lima-ssh-ready"
else
	run_modules "${LIMA_CIDATA_MNT}/boot.${OS}"
fi

# provision_each MODE COMMAND...: runs COMMAND... FILE for every provision.MODE/FILE.
provision_each() {
	local mode=$1 f
	shift
	[ -d "${LIMA_CIDATA_MNT}/provision.${mode}" ] || return 0
	for f in "${LIMA_CIDATA_MNT}/provision.${mode}"/*; do
		[ -f "$f" ] || continue
		if ! lima-provision.sh "$mode" "${f##*/}" "$@" "$f"; then
			CODE=1
		fi
	done
}

provision_each data provision-data.sh
provision_each yq provision-yq.sh
provision_each system

if [ -d "${LIMA_CIDATA_MNT}/provision.user" ]; then
	user=${LIMA_CIDATA_USER}
	uid=${LIMA_CIDATA_UID}
	home=${LIMA_CIDATA_HOME}
	runtime_dir=/run/user/${uid}
	if [ -d /run/systemd/system ]; then
		# The user's systemd instance owns XDG_RUNTIME_DIR; start it if no session did.
		if [ ! -e "${runtime_dir}/systemd/private" ]; then
			systemctl start "user@${uid}.service" || log "WARNING: cannot start user@${uid}.service"
		fi
		waited=0
		until [ -e "${runtime_dir}/systemd/private" ] || [ "$waited" -ge 120 ]; do
			sleep 1
			waited=$((waited + 1))
		done
		[ -e "${runtime_dir}/systemd/private" ] || log "WARNING: ${runtime_dir}/systemd/private did not appear; running user scripts anyway"
	fi
	params=$(compgen -e | grep '^PARAM_' | paste -sd, -)
	gid=$(id -g "$user")
	for f in "${LIMA_CIDATA_MNT}"/provision.user/*; do
		[ -f "$f" ] || continue
		script="${home}/.lima-user-script"
		install -m 0755 -o "$user" -g "$gid" "$f" "$script"
		cmd=(sudo -iu "$user")
		[ -n "$params" ] && cmd+=("--preserve-env=${params}")
		cmd+=("XDG_RUNTIME_DIR=${runtime_dir}" "$script")
		if ! lima-provision.sh user "${f##*/}" "${cmd[@]}"; then
			CODE=1
		fi
	done
	rm -f "${home}/.lima-user-script"
fi

# Without passwordless sudo the user gets a random password once, in ~/password.
if [ "${LIMA_CIDATA_PASSWORDLESS_SUDO:-}" != 1 ] && [ ! -e "${LIMA_CIDATA_HOME}/.lima-password-set" ]; then
	password=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	if printf '%s:%s\n' "${LIMA_CIDATA_USER}" "$password" | chpasswd; then
		gid=$(id -g "${LIMA_CIDATA_USER}")
		(umask 077 && printf '%s\n' "$password" >"${LIMA_CIDATA_HOME}/password")
		chown "${LIMA_CIDATA_USER}:${gid}" "${LIMA_CIDATA_HOME}/password"
		touch "${LIMA_CIDATA_HOME}/.lima-password-set"
		chown "${LIMA_CIDATA_USER}:${gid}" "${LIMA_CIDATA_HOME}/.lima-password-set"
		log "The password of ${LIMA_CIDATA_USER} is in ${LIMA_CIDATA_HOME}/password"
	else
		log "WARNING: cannot set a password for ${LIMA_CIDATA_USER}"
		CODE=1
	fi
fi

if [ -e "$LIMA_REBOOT_REQUIRED" ]; then
	log "A reboot is required; ${RUN}/lima-boot-done is written after it"
else
	printf '%s\n' "${LIMA_CIDATA_IID}" >"$RUN/lima-boot-done.tmp" && mv -f "$RUN/lima-boot-done.tmp" "$RUN/lima-boot-done"
fi
printf '%s %s\n' "${LIMA_CIDATA_IID}" "$CODE" >"$RUN/lima-boot-ran"
log "boot.sh finished with exit status ${CODE}"
exit "$CODE"
