#!/usr/bin/env bash
# Integration test of one template with a real VM (the seed's entry point):
#   hack/test-templates.sh TEMPLATE.yaml
# validate → create → start → shell checks (uname, os-release, a file that must
# survive a restart) → restart → stop → delete. On failure prints the tail of
# serial.log and ha.stderr.log. Uses a throw-away LIMA_HOME unless LIMA_HOME is set.
# LIMACTL selects the binary (default: target/release/limactl, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

template=${1:?usage: hack/test-templates.sh TEMPLATE.yaml}
name=${NAME:-$(basename "${template%.*}" | tr -c 'a-zA-Z0-9\n' '-' | sed 's/^-*//; s/-*$//')}
limactl=${LIMACTL:-}
if [ -z "$limactl" ]; then
  cargo build --release -q
  limactl=$PWD/target/release/limactl
fi
if [ -z "${LIMA_HOME:-}" ]; then
  LIMA_HOME=$(mktemp -d /tmp/lima-test-XXXXXX)
  export LIMA_HOME
  trap 'rm -rf "$LIMA_HOME"' EXIT
fi

step() { printf '\n=== %s\n' "$*" >&2; }
diagnose() {
  local dir="$LIMA_HOME/$name"
  for f in serial.log ha.stderr.log; do
    if [ -f "$dir/$f" ]; then
      printf '\n--- last lines of %s\n' "$dir/$f" >&2
      tail -n 40 "$dir/$f" >&2
    fi
  done
}
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  diagnose
  "$limactl" delete -f "$name" >/dev/null 2>&1 || true
  exit 1
}

step "validate $template"
"$limactl" validate "$template" || fail "validate"

step "create $name"
"$limactl" create --name "$name" "$template" || fail "create"

step "start $name"
start=$(date +%s)
"$limactl" start "$name" || fail "start"
echo "started in $(($(date +%s) - start)) s" >&2

step "shell checks"
"$limactl" shell "$name" uname -a || fail "uname -a"
"$limactl" shell "$name" cat /etc/os-release || fail "cat /etc/os-release"
"$limactl" shell "$name" sh -c 'echo persisted >"$HOME/test-templates-marker"' || fail "write marker"
"$limactl" list "$name" || fail "list"

step "restart $name"
"$limactl" restart "$name" || fail "restart"
got=$("$limactl" shell "$name" sh -c 'cat "$HOME/test-templates-marker"') || fail "read marker"
[ "$got" = "persisted" ] || fail "the file written before the restart is gone (got: $got)"

step "stop $name"
"$limactl" stop "$name" || fail "stop"
status=$("$limactl" list --format '{{.Status}}' "$name")
[ "$status" = "Stopped" ] || fail "status after stop is $status"

step "delete $name"
"$limactl" delete "$name" || fail "delete"
[ ! -e "$LIMA_HOME/$name" ] || fail "instance directory left behind"
echo "PASS: $template" >&2
