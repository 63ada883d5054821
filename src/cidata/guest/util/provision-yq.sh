#!/bin/bash
# Usage: provision-yq.sh FILE
# Applies the yq expression provision.yq/INDEX (lima.yaml `mode: yq`) to
# LIMA_CIDATA_YQ_PROVISION_<INDEX>_PATH, creating the file when it is missing, then
# sets its _OWNER and _PERMISSIONS. Needs `lima-guestagent yq` from the cidata volume
# (or a mikefarah `yq` on PATH).
set -eu
f=$1
idx=${f##*/}
# get FIELD: prints $LIMA_CIDATA_YQ_PROVISION_<INDEX>_FIELD (empty when unset). Through
# eval: busybox ash (Alpine's /bin/bash) has no ${!v}; v is checked to be a name first.
get() {
	local v="LIMA_CIDATA_YQ_PROVISION_${idx}_$1"
	case "$v" in *[!A-Za-z0-9_]*) return 0 ;; esac
	eval "printf '%s' \"\${$v-}\""
}
path=$(get PATH)
owner=$(get OWNER)
perm=$(get PERMISSIONS)
format=$(get FORMAT)
if [ -z "$path" ]; then
	echo "provision.yq/${idx}: no LIMA_CIDATA_YQ_PROVISION_${idx}_PATH" >&2
	exit 1
fi
# run_yq ARG...: the yq found (a function: busybox ash has no arrays).
if [ -x "${LIMA_CIDATA_MNT}/lima-guestagent" ]; then
	run_yq() { "${LIMA_CIDATA_MNT}/lima-guestagent" yq "$@"; }
elif command -v yq >/dev/null 2>&1; then
	run_yq() { yq "$@"; }
else
	echo "provision.yq/${idx}: no yq: the cidata volume has no lima-guestagent and yq is not installed" >&2
	exit 127
fi
if [ -z "$format" ] || [ "$format" = auto ]; then
	case "${path##*.}" in
	csv | ini | json | properties | toml | tsv | xml | yaml) format=${path##*.} ;;
	yml) format=yaml ;;
	*)
		echo "WARNING: cannot tell the format of ${path} from its extension; using yaml" >&2
		format=yaml
		;;
	esac
fi
parent=$(dirname "$path")
[ -d "$parent" ] || mkdir -p "$parent"
if [ -e "$path" ]; then
	run_yq --inplace --from-file "$f" --input-format "$format" --output-format "$format" "$path"
else
	tmp=$(mktemp "${parent}/.lima-yq.XXXXXX")
	if ! run_yq --null-input --from-file "$f" --output-format "$format" >"$tmp"; then
		rm -f "$tmp"
		exit 1
	fi
	mv -f "$tmp" "$path"
fi
chown "${owner:-root:root}" "$path"
chmod "${perm:-644}" "$path"
echo "edited ${path} (${format}, ${owner}, ${perm})"
