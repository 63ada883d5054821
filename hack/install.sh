#!/usr/bin/env bash
# Builds limactl and installs it under PREFIX in Lima's layout:
#   bin/limactl, bin/lima, bin/{nerdctl,docker,podman,kubectl,apptainer}.lima
#   share/lima/lima-guestagent.Linux-x86_64   (static; found by limactl with no variable)
#   share/lima/templates/                     (Lima's place for templates)
#   share/man/man1/limactl*.1                 (generated from the CLI)
#   share/bash-completion/completions/limactl, share/zsh/site-functions/_limactl,
#   share/fish/vendor_completions.d/limactl.fish
# PREFIX defaults to /usr/local for root, ~/.local otherwise. Prints PREFIX/bin.
# Files are replaced by rename, so running instances (whose host agents run
# bin/limactl) are not disturbed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 1 ]; then
  echo "usage: hack/install.sh [PREFIX]" >&2
  exit 2
fi
if [ $# -eq 1 ]; then
  prefix=$1
elif [ "$(id -u)" -eq 0 ]; then
  prefix=/usr/local
else
  prefix=$HOME/.local
fi
case $prefix in
/*) ;;
*) prefix=$PWD/$prefix ;;
esac

arch=$(uname -m)
# LIMA_INSTALL_FROM=DIR installs the limactl and lima already built in DIR
# instead of building the release ones. Its test uses the binaries the test
# run built: a `cargo build` there would relink target/debug/limactl (cargo
# build resolves the crate's features without its dev-dependencies, so the
# binary differs) while the other tests run it. The guest agent is always
# the static release build.
if [ -n "${LIMA_INSTALL_FROM:-}" ]; then
  release=$(realpath "$LIMA_INSTALL_FROM")
  for b in limactl lima; do
    if [ ! -x "$release/$b" ]; then
      echo "install: LIMA_INSTALL_FROM=$LIMA_INSTALL_FROM has no executable $b: build it first (cargo build --bin limactl --bin lima)" >&2
      exit 2
    fi
  done
else
  cargo build -q --release --bin limactl --bin lima >&2
  release=$(realpath "${CARGO_TARGET_DIR:-target}")/release
fi
guestagent=$(hack/build-guestagent.sh | tail -n1)

umask 022
# put SRC DEST MODE: copy to a temporary name beside DEST, then rename.
put() {
  local dir tmp
  dir=$(dirname "$2")
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.install.XXXXXX")
  cat "$1" >"$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
}

put "$release/limactl" "$prefix/bin/limactl" 0755
put "$release/lima" "$prefix/bin/lima" 0755
put "$guestagent" "$prefix/share/lima/lima-guestagent.Linux-$arch" 0755
# The templates, where Lima keeps them: limactl searches share/lima/templates
# beside its binary before its bundled copies, and `info` lists their paths.
while IFS= read -r -d '' t; do
  put "$t" "$prefix/share/lima/templates/${t#templates/}" 0644
done < <(find templates -type f -name '*.yaml' -print0)

# The wrappers Lima ships: run the tool in the instance (LIMA_INSTANCE, each
# with Lima's default instance name) through `lima`.
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
wrapper() { # NAME DEFAULT_INSTANCE COMMAND…
  local name=$1 instance=$2
  shift 2
  cat >"$staging/$name.lima" <<EOF
#!/bin/sh
# $name in a Lima instance (\$LIMA_INSTANCE, default "$instance").
set -eu
: "\${LIMA_INSTANCE:=$instance}"
export LIMA_INSTANCE
exec lima $* "\$@"
EOF
  put "$staging/$name.lima" "$prefix/bin/$name.lima" 0755
}
wrapper nerdctl default nerdctl
wrapper docker docker docker
wrapper podman podman podman
wrapper kubectl k8s kubectl
wrapper apptainer apptainer apptainer

"$prefix/bin/limactl" generate-doc "$staging/man"
for page in "$staging"/man/*.1; do
  put "$page" "$prefix/share/man/man1/$(basename "$page")" 0644
done
"$prefix/bin/limactl" completion bash >"$staging/limactl.bash"
"$prefix/bin/limactl" completion zsh >"$staging/_limactl"
"$prefix/bin/limactl" completion fish >"$staging/limactl.fish"
put "$staging/limactl.bash" "$prefix/share/bash-completion/completions/limactl" 0644
put "$staging/_limactl" "$prefix/share/zsh/site-functions/_limactl" 0644
put "$staging/limactl.fish" "$prefix/share/fish/vendor_completions.d/limactl.fish" 0644

case ":$PATH:" in
*":$prefix/bin:"*) ;;
*) echo "install: $prefix/bin is not on PATH: export PATH=\"$prefix/bin:\$PATH\"" >&2 ;;
esac
echo "$prefix/bin"
