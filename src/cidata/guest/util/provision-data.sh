#!/bin/bash
# Usage: provision-data.sh FILE
# Installs provision.data/INDEX (lima.yaml `mode: data`) at
# LIMA_CIDATA_DATAFILE_<INDEX>_PATH with its _OWNER and _PERMISSIONS, unless the
# file exists and _OVERWRITE is false.
set -eu
f=$1
idx=${f##*/}
# get FIELD: prints $LIMA_CIDATA_DATAFILE_<INDEX>_FIELD (empty when unset). Through eval:
# busybox ash (Alpine's /bin/bash) has no ${!v}; v is checked to be a name first.
get() {
	local v="LIMA_CIDATA_DATAFILE_${idx}_$1"
	case "$v" in *[!A-Za-z0-9_]*) return 0 ;; esac
	eval "printf '%s' \"\${$v-}\""
}
path=$(get PATH)
owner=$(get OWNER)
perm=$(get PERMISSIONS)
overwrite=$(get OVERWRITE)
if [ -z "$path" ]; then
	echo "provision.data/${idx}: no LIMA_CIDATA_DATAFILE_${idx}_PATH" >&2
	exit 1
fi
if [ -e "$path" ] && [ "$overwrite" = false ]; then
	echo "${path} exists and overwrite is false: left alone"
	exit 0
fi
user=${owner%%:*}
parent=$(dirname "$path")
if [ ! -d "$parent" ]; then
	# Created as the owner where possible, so that new directories belong to them.
	if [ -z "$user" ] || [ "$user" = root ]; then
		mkdir -p "$parent"
	else
		sudo -iu "$user" mkdir -p "$parent" 2>/dev/null || mkdir -p "$parent"
	fi
fi
cp "$f" "$path"
chown "${owner:-root:root}" "$path"
chmod "${perm:-644}" "$path"
echo "wrote ${path} (${owner}, ${perm})"
