#!/bin/sh
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
#
# Plain POSIX sh: on Alpine /bin/sh is busybox ash and /bin/bash exists only once
# boot.essential.Linux/01-alpine-ash-as-bash.sh (run from here) made it; on Debian it
# is dash. (The modules may use the bash features busybox ash has.)
# shellcheck disable=SC3043 # `local`: dash, busybox ash and bash all have it
set -u

# >>> log: boot.sh's logging (src/cidata/tests/shells.rs runs it extracted).
# `LIMA <time>| <message>`, the time as `date -Iseconds` prints it, but not from a `date`
# process per line: one costs a tenth of a second while a guest under emulation boots,
# and there is a line per module. POSIX sh has no clock of its own, so the first line
# runs `date` once (the epoch and the offset from UTC); the next ones use builtins only:
# the shell's $EPOCHSECONDS where it has one (busybox ash, bash 5), else (dash, Debian's
# sh) that epoch plus the time since boot passed since then, from /proc/uptime (which,
# unlike $EPOCHSECONDS, does not follow a clock step while boot.sh runs). Without
# /proc/uptime, `date` runs per line. The offset stays the first line's.
log_clock=
# shellcheck disable=SC3028 # EPOCHSECONDS: used only where the shell sets it
log_init() {
	local t u0 u1 s ns tz sign hh mm
	log_clock='date'
	[ -r /proc/uptime ] && read -r u0 _ </proc/uptime
	t=$(date '+%s %N %z' 2>/dev/null) || return 0
	[ -r /proc/uptime ] && read -r u1 _ </proc/uptime
	s=${t%% *}
	t=${t#* }
	ns=${t%% *}
	tz=${t#* }
	case "$s" in '' | *[!0-9]*) return 0 ;; esac
	case "$tz" in [+-][0-9][0-9][0-9][0-9]) ;; *) return 0 ;; esac
	sign=${tz%????} hh=${tz#?} mm=${tz#???}
	hh=${hh%??}
	log_off=$(((${hh#0} * 60 + ${mm#0}) * 60))
	[ "$sign" = - ] && log_off=$((-log_off))
	log_tz=${sign}${hh}:${mm}
	case "${EPOCHSECONDS:-}" in
	'' | *[!0-9]*) ;;
	*)
		# A real clock, not a stale value from the environment.
		if [ "$EPOCHSECONDS" -ge "$s" ]; then
			log_clock=epoch
			return 0
		fi
		;;
	esac
	[ -n "${u0:-}" ] && [ -n "${u1:-}" ] || return 0
	# Centiseconds since the epoch at boot: date's time (hundredths from %N where date
	# has it) less the uptime it ran at (midway between the readings around it).
	ns=${ns%"${ns#??}"}
	case "$ns" in [0-9][0-9]) ns=${ns#0} ;; *) ns=0 ;; esac
	log_centi "$u0"
	u0=$log_c
	log_centi "$u1"
	log_base=$((s * 100 + ns - (u0 + log_c) / 2))
	log_clock=uptime
}
# log_centi SECONDS.HH: log_c=its centiseconds (/proc/uptime has two decimals), with
# no leading zero (that would make it octal). A variable: a command substitution forks.
log_centi() {
	log_c=${1%.*}${1#*.}
	log_c=${log_c#"${log_c%%[!0]*}"}
	log_c=${log_c:-0}
}
# shellcheck disable=SC3028 # EPOCHSECONDS: only when log_init found it
log() {
	local u
	[ -n "$log_clock" ] || log_init
	case "$log_clock" in
	epoch) log_format "$EPOCHSECONDS" "$*" ;;
	uptime)
		read -r u _ </proc/uptime
		log_centi "$u"
		log_format $(((log_base + log_c) / 100)) "$*"
		;;
	*) printf 'LIMA %s| %s\n' "$(date -Iseconds)" "$*" ;;
	esac
}
# log_format EPOCH MESSAGE: the line for that time, at offset log_off (seconds east
# of UTC, written log_tz). The calendar date by Howard Hinnant's civil_from_days.
log_format() {
	local s t z era doe yoe doy mp d m y
	t=$(($1 + log_off))
	s=$(((t % 86400 + 86400) % 86400))
	z=$(((t - s) / 86400 + 719468))
	era=$((z / 146097))
	doe=$((z - era * 146097))
	yoe=$(((doe - doe / 1460 + doe / 36524 - doe / 146096) / 365))
	doy=$((doe - (365 * yoe + yoe / 4 - yoe / 100)))
	mp=$(((5 * doy + 2) / 153))
	d=$((doy - (153 * mp + 2) / 5 + 1))
	m=$((mp < 10 ? mp + 3 : mp - 9))
	y=$((yoe + era * 400 + (m <= 2)))
	printf 'LIMA %04d-%02d-%02dT%02d:%02d:%02d%s| %s\n' "$y" "$m" "$d" \
		$((s / 3600)) $((s / 60 % 60)) $((s % 60)) "$log_tz" "$2"
}
log_off=0 log_tz=+00:00 log_base=0 log_c=0
# <<< log

# Builtins where they do the job, here and below: a process costs most of a tenth of a
# second while a guest under emulation boots, and this runs on the way to Ready.
OS=
[ -r /proc/sys/kernel/ostype ] && read -r OS </proc/sys/kernel/ostype
[ -n "$OS" ] || OS=$(uname -s)
RUN=/run
[ "$OS" = Linux ] || RUN=/var/run

# It may be started twice per boot: early, from cloud-init's bootcmd through
# systemd-run (LIMA_BOOT_EARLY=1, so the instance is ready about when sshd is),
# and by the per-boot hook of cloud-init's final stage. Only one run does the
# work; the other waits for it and returns its exit status.
exec 9>"$RUN/lima-boot.lock"
flock 9
LIMA_IID_NOW=
if [ -f "${LIMA_CIDATA_MNT:-/nonexistent}/lima.env" ]; then
	while IFS= read -r line; do
		case "$line" in
		LIMA_CIDATA_IID=*)
			LIMA_IID_NOW=${line#LIMA_CIDATA_IID=}
			break
			;;
		esac
	done <"${LIMA_CIDATA_MNT}/lima.env"
fi
if [ -n "$LIMA_IID_NOW" ] && [ -f "$RUN/lima-boot-ran" ] && read -r ran_iid ran_code _ <"$RUN/lima-boot-ran" &&
	[ "$ran_iid" = "$LIMA_IID_NOW" ]; then
	exit "${ran_code:-1}"
fi
if [ "${LIMA_BOOT_EARLY:-}" = 1 ]; then
	exec >>/var/log/cloud-init-output.log 2>&1
fi
export LIMA_REBOOT_REQUIRED="$RUN/lima-reboot-required"
LIMA_PROVISION_DIR="$RUN/lima-provision"
rm -rf "$RUN/lima-boot-done" "$LIMA_REBOOT_REQUIRED" "$LIMA_PROVISION_DIR"

if [ -z "${LIMA_CIDATA_MNT:-}" ] || [ ! -f "${LIMA_CIDATA_MNT}/lima.env" ]; then
	log "ERROR: the cidata volume is not mounted at LIMA_CIDATA_MNT=${LIMA_CIDATA_MNT:-}"
	exit 1
fi

# >>> env: loading the env files (src/cidata/tests/shells.rs runs it extracted).
# is_name WORD: WORD is a shell variable name. `export` of anything else is an error
# that ends a POSIX shell (dash, busybox ash); bash only complained and went on.
is_name() {
	case "$1" in
	'' | [0-9]* | *[!A-Za-z0-9_]*) return 1 ;;
	esac
}

# KEY=value lines, values unquoted (lima.env, param.env).
load_env_file() {
	local line
	[ -f "$1" ] || return 0
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
		*=*)
			if is_name "${line%%=*}"; then
				export "${line?}"
			else
				log "WARNING: ${1}: not a variable name: ${line%%=*}"
			fi
			;;
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
		if is_name "$key"; then
			export "$key=$val"
		else
			log "WARNING: ${1}: not a variable name: ${key}"
		fi
	done <"$1"
}
# <<< env

load_env_file "${LIMA_CIDATA_MNT}/lima.env"
load_env_file "${LIMA_CIDATA_MNT}/param.env"
load_etc_environment "${LIMA_CIDATA_MNT}/etc_environment"
export PATH="${LIMA_CIDATA_MNT}/util:${PATH}"
export LIMA_PROVISION_DIR="$RUN/lima-provision"
mkdir -m 0755 "$LIMA_PROVISION_DIR"

log "boot.sh starting (instance ${LIMA_CIDATA_IID:-?}, ${LIMA_CIDATA_NAME:-?})"
CODE=0

# The guest user's UID and GID (exported for the modules as LIMA_USER_UID and
# LIMA_USER_GID): from /etc/passwd with builtins, else `id` (NSS users).
lookup_user() {
	local name _pw uid gid rest
	while IFS=: read -r name _pw uid gid rest; do
		if [ "$name" = "$1" ]; then
			export LIMA_USER_UID="$uid" LIMA_USER_GID="$gid"
			return 0
		fi
	done </etc/passwd
	uid=$(id -u "$1" 2>/dev/null) && gid=$(id -g "$1" 2>/dev/null) || return 1
	export LIMA_USER_UID="$uid" LIMA_USER_GID="$gid"
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
	local dir="$1" f
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
	local mode="$1" f
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
	# The exported PARAM_* variables, sorted, for sudo to keep. (A line of a multi-line
	# value that looks like PARAM_X=… adds a name sudo then finds unset: harmless.)
	params=$(env | sed -n 's/^\(PARAM_[A-Za-z0-9_]*\)=.*/\1/p' | LC_ALL=C sort | paste -sd, -)
	gid=$(id -g "$user")
	for f in "${LIMA_CIDATA_MNT}"/provision.user/*; do
		[ -f "$f" ] || continue
		script="${home}/.lima-user-script"
		install -m 0755 -o "$user" -g "$gid" "$f" "$script"
		# (--preserve-env only when there are PARAM_* variables.)
		if ! lima-provision.sh user "${f##*/}" sudo -iu "$user" ${params:+"--preserve-env=${params}"} \
			"XDG_RUNTIME_DIR=${runtime_dir}" "$script"; then
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
