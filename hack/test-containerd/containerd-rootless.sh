#!/bin/sh
# Runs containerd for an unprivileged user inside a RootlessKit user, mount and network
# namespace (this project's own take on the script nerdctl ships under this name).
# Outside: starts rootlesskit, which re-runs this script as the namespace's "root".
# Inside: points containerd's default paths at the user's own directories, then execs it.
set -eu
: "${XDG_RUNTIME_DIR:?containerd-rootless.sh needs XDG_RUNTIME_DIR}"
state_dir=$XDG_RUNTIME_DIR/containerd-rootless

if [ "${_CONTAINERD_ROOTLESS_CHILD:-}" != 1 ]; then
  net=${CONTAINERD_ROOTLESS_ROOTLESSKIT_NET:-slirp4netns}
  port_driver=${CONTAINERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER:-builtin}
  [ "$net" = host ] && port_driver=none
  # A stale state directory from a killed run would make rootlesskit refuse to start.
  rm -rf "$state_dir"
  export _CONTAINERD_ROOTLESS_CHILD=1
  exec rootlesskit \
    --state-dir="$state_dir" \
    --net="$net" --mtu=65520 --disable-host-loopback \
    --slirp4netns-sandbox=auto --slirp4netns-seccomp=auto \
    --port-driver="$port_driver" \
    --copy-up=/etc --copy-up=/run --copy-up=/var/lib \
    --propagation=rslave \
    "$0" "$@"
fi

# Inside: /etc, /run and /var/lib are writable copies whose entries link to the real
# ones; replace containerd's three with binds of directories the user owns.
data_dir=${XDG_DATA_HOME:-$HOME/.local/share}/containerd
config_dir=${XDG_CONFIG_HOME:-$HOME/.config}/containerd
mkdir -p "$XDG_RUNTIME_DIR/containerd" "$data_dir" "$config_dir"
for pair in "/run/containerd=$XDG_RUNTIME_DIR/containerd" "/var/lib/containerd=$data_dir" "/etc/containerd=$config_dir"; do
  target=${pair%%=*} source=${pair#*=}
  if [ -L "$target" ]; then rm -f "$target"; fi
  mkdir -p "$target"
  mount --bind "$source" "$target"
done
exec containerd "$@"
