#!/bin/sh
# Sets up rootless containerd for the calling user as a systemd user service (this
# project's own take on the tool nerdctl ships under this name).
#   install     write ~/.config/systemd/user/containerd.service, enable and start it
#   uninstall   stop, disable and remove it
#   check       report whether the prerequisites are met
#   nsenter CMD run CMD inside the rootless namespaces (e.g. `nsenter ctr images ls`)
set -eu
bin_dir=$(dirname "$(readlink -f "$0")")
unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
unit=$unit_dir/containerd.service
die() { echo "containerd-rootless-setuptool.sh: error: $*" >&2; exit 1; }

check() {
  [ "$(id -u)" -ne 0 ] || die "run as the unprivileged user, not root"
  [ -n "${XDG_RUNTIME_DIR:-}" ] || die "XDG_RUNTIME_DIR is not set (log in through systemd-logind, or enable lingering)"
  command -v newuidmap >/dev/null || [ -x /usr/bin/newuidmap ] || die "newuidmap missing (package uidmap)"
  grep -q "^$(id -un):" /etc/subuid || die "no /etc/subuid entry for $(id -un)"
  systemctl --user show-environment >/dev/null || die "no systemd user instance for $(id -un)"
}

case "${1:-}" in
  check) check; echo "ok" ;;
  install)
    check
    mkdir -p "$unit_dir"
    tmp=$unit.tmp.$$
    cat >"$tmp" <<UNIT
[Unit]
Description=containerd (rootless)

[Service]
Environment=PATH=$bin_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=$bin_dir/containerd-rootless.sh
ExecReload=/bin/kill -s HUP \$MAINPID
TimeoutSec=0
Restart=always
RestartSec=2
StartLimitBurst=3
StartLimitInterval=60s
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Delegate=yes
Type=simple
KillMode=mixed

[Install]
WantedBy=default.target
UNIT
    mv -f "$tmp" "$unit"
    systemctl --user daemon-reload
    systemctl --user enable --now containerd.service
    ;;
  uninstall)
    systemctl --user disable --now containerd.service 2>/dev/null || true
    rm -f "$unit"
    systemctl --user daemon-reload
    ;;
  nsenter)
    shift
    pid_file=$XDG_RUNTIME_DIR/containerd-rootless/child_pid
    [ -s "$pid_file" ] || die "rootless containerd is not running ($pid_file missing)"
    exec nsenter --user --preserve-credentials --mount --net --target "$(cat "$pid_file")" -- "$@"
    ;;
  *) die "usage: $0 install|uninstall|check|nsenter CMD..." ;;
esac
