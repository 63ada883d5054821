#!/bin/bash
# Usage: lima-provision.sh MODE INDEX COMMAND [ARG...]
#
# Runs one provision step (INDEX is its 8-digit position in lima.yaml's provision list)
# with stdin from /dev/null and records the result for the host in $LIMA_PROVISION_DIR
# (default /run/lima-provision):
#   INDEX.log     stdout and stderr of COMMAND (the last 256 KiB), mode 0640, group of
#                 the guest user
#   INDEX.status  `key=value` lines, written last and atomically:
#                 mode=MODE  exit=CODE  iid=INSTANCE-ID  started=T  finished=T
# The log is also copied to stdout, each line prefixed with `[MODE INDEX] `.
# Exits with COMMAND's exit status.
set -u
if [ $# -lt 3 ]; then
	echo "usage: $0 MODE INDEX COMMAND [ARG...]" >&2
	exit 2
fi
mode=$1 idx=$2
shift 2
dir=${LIMA_PROVISION_DIR:-/run/lima-provision}
if [ ! -d "$dir" ]; then
	mkdir -p "$dir"
	chmod 0755 "$dir"
fi
out="$dir/$idx.log"
status="$dir/$idx.status"
rm -f "$status"

log() { printf 'LIMA %s| %s\n' "$(date -Iseconds)" "$*"; }

started=$(date -Iseconds)
log "Running ${mode} provision script ${idx}"
"$@" </dev/null >"$out" 2>&1
code=$?
finished=$(date -Iseconds)

max=262144
if [ "$(stat -c %s "$out")" -gt "$max" ]; then
	tail -c "$max" "$out" >"$out.tmp" && mv -f "$out.tmp" "$out"
fi
chmod 0640 "$out"
if [ -n "${LIMA_CIDATA_USER:-}" ] && gid=$(id -g "$LIMA_CIDATA_USER" 2>/dev/null); then
	chgrp "$gid" "$out" 2>/dev/null || true
fi
sed "s/^/[${mode} ${idx}] /" "$out"

{
	printf 'mode=%s\n' "$mode"
	printf 'exit=%d\n' "$code"
	printf 'iid=%s\n' "${LIMA_CIDATA_IID:-}"
	printf 'started=%s\n' "$started"
	printf 'finished=%s\n' "$finished"
} >"$status.tmp"
chmod 0644 "$status.tmp"
mv -f "$status.tmp" "$status"

if [ "$code" -eq 0 ]; then
	log "${mode} provision script ${idx} succeeded"
else
	log "WARNING: ${mode} provision script ${idx} failed with exit status ${code} (output: ${out})"
fi
exit "$code"
