#!/usr/bin/env bash
# Builds, from Debian 12 (bookworm) packages only, what the container tests need offline:
#
#   nerdctl-full-test-amd64.tar.gz  laid out like Lima's nerdctl-full archive (bin/containerd,
#                                   bin/ctr, bin/runc, libexec/cni/*, bin/rootlesskit,
#                                   bin/slirp4netns, bin/containerd-rootless{,-setuptool}.sh,
#                                   lib/systemd/system/containerd.service). Debian has no
#                                   nerdctl, so there is none: the tests drive containerd
#                                   through `ctr`. The two rootless scripts are this
#                                   project's own (hack/test-containerd/), as nerdctl's are not
#                                   packaged by Debian.
#   test-oci-image.tar              an OCI image layout (busybox-static) for `ctr images
#                                   import`, named docker.io/library/lima-test:latest
#
# Output: ${LIMA_TEST_CONTAINERD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lima-rs/test-containerd}/KEY/
# where KEY hashes this script and hack/test-containerd/*; a finished build is reused as is,
# older KEY directories are removed. The .debs are kept between builds in apt-archives/.
# Everything is logged to stderr; the last line on stdout is "ARCHIVE_PATH sha256:HEX".
set -euo pipefail

exec 3>&1 1>&2 # stdout carries the result line only

script_path=$(readlink -f "${BASH_SOURCE[0]}")
helper_dir="$(dirname "$script_path")/test-containerd"
log() { printf 'build-test-containerd: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

key=$(
  {
    cat "$script_path"
    for f in "$helper_dir"/*; do
      printf '\0%s\0' "${f##*/}"
      cat "$f"
    done
  } | sha256sum | cut -c1-16
)
base_dir="${LIMA_TEST_CONTAINERD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lima-rs/test-containerd}"
mkdir -p "$base_dir"
base_dir=$(cd "$base_dir" && pwd -P)
out_dir="$base_dir/$key"
archive_name=nerdctl-full-test-amd64.tar.gz

result() { echo "$out_dir/$archive_name sha256:$(cat "$out_dir/$archive_name.sha256")" >&3; }
[ -f "$out_dir/.done" ] && { result; exit 0; }
exec 9>"$base_dir/.lock"
flock 9
[ -f "$out_dir/.done" ] && { result; exit 0; }

[ "$(dpkg --print-architecture)" = amd64 ] || die "only amd64 hosts are supported (the test guest is x86_64)"
for tool in apt-get dpkg-deb tar gzip sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found: run hack/install-deps.sh"
done

rm -rf "$base_dir"/.tmp-*
work="$base_dir/.tmp-$key-$$"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/x" "$work/out"
deb_cache="$base_dir/apt-archives"
mkdir -p "$deb_cache"

# Packages, and the shared libraries slirp4netns and uidmap need that the test guest lacks
# (containerd, runc and the CNI plugins only need libc and libseccomp, which it has).
# uidmap (newuidmap/newgidmap, setuid root) is what rootlesskit maps the subordinate IDs
# with; Lima's guests install it as a package, the offline test guest cannot.
packages=(containerd runc containernetworking-plugins rootlesskit slirp4netns uidmap busybox-static
  libslirp0 libglib2.0-0 libpcre2-8-0 libsubid4)
# Downloads each package's bookworm candidate unless that exact .deb is cached.
cd "$work/debs"
for p in "${packages[@]}"; do
  ver=$(apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no candidate for $p: run apt-get update"
  file_ver=${ver//:/%3a}
  cached=$(find "$deb_cache" -maxdepth 1 -name "${p}_${file_ver}_*.deb" | head -n1)
  if [ -z "$cached" ]; then
    log "downloading $p $ver"
    (cd "$deb_cache" && apt-get download -q -o APT::Sandbox::User=root "$p=$ver" >&2) || die "apt-get download $p=$ver failed (offline?)"
    cached=$(find "$deb_cache" -maxdepth 1 -name "${p}_${file_ver}_*.deb" | head -n1)
    [ -n "$cached" ] || die "apt-get download left no .deb for $p"
  fi
  dpkg-deb -x "$cached" "$work/x"
done
cd "$work"

# --- nerdctl-full layout --------------------------------------------------------------------
x="$work/x"
a="$work/archive"
mkdir -p "$a/bin" "$a/libexec/cni" "$a/lib/systemd/system" "$a/libexec/lima-test/lib"
for b in containerd containerd-shim containerd-shim-runc-v1 containerd-shim-runc-v2 ctr; do
  install -m 0755 "$x/usr/bin/$b" "$a/bin/$b"
done
runc=$x/usr/sbin/runc
[ -x "$runc" ] || runc=$x/usr/bin/runc
install -m 0755 "$runc" "$a/bin/runc"
for b in rootlesskit rootlessctl; do install -m 0755 "$x/usr/bin/$b" "$a/bin/$b"; done
cp -a "$x/usr/lib/cni/." "$a/libexec/cni/"
# slirp4netns runs from libexec with its libraries beside it; bin/slirp4netns points it there.
install -m 0755 "$x/usr/bin/slirp4netns" "$a/libexec/lima-test/slirp4netns"
for lib in libslirp.so.0 libglib-2.0.so.0 libpcre2-8.so.0; do
  src=$(find "$x/usr/lib" "$x/lib" -name "$lib" 2>/dev/null | head -n1)
  [ -n "$src" ] || die "$lib not found in the unpacked packages"
  cp -L "$src" "$a/libexec/lima-test/lib/$lib"
done
cat >"$a/bin/slirp4netns" <<'EOF'
#!/bin/sh
# slirp4netns from Debian, with the libraries the guest may lack shipped beside it.
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../libexec/lima-test/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/../libexec/lima-test/slirp4netns" "$@"
EOF
chmod 0755 "$a/bin/slirp4netns"
# setuid binaries ignore LD_LIBRARY_PATH: libsubid goes to lib/, which is the linker's
# /usr/local/lib once installed under the default guestInstallPrefix (the boot script
# runs ldconfig after unpacking).
for b in newuidmap newgidmap; do install -m 4755 "$x/usr/bin/$b" "$a/bin/$b"; done
mkdir -p "$a/lib"
cp -L "$(find "$x/usr/lib" -name libsubid.so.4 | head -n1)" "$a/lib/libsubid.so.4"
install -m 0755 "$helper_dir/containerd-rootless.sh" "$a/bin/containerd-rootless.sh"
install -m 0755 "$helper_dir/containerd-rootless-setuptool.sh" "$a/bin/containerd-rootless-setuptool.sh"
install -m 0644 "$helper_dir/containerd.service" "$a/lib/systemd/system/containerd.service"
for p in "${packages[@]}"; do
  f=$(find "$deb_cache" -maxdepth 1 -name "${p}_*.deb" | sort -V | tail -n1)
  echo "${f##*/}"
done >"$a/libexec/lima-test/PACKAGES"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$a" -czf "$work/out/$archive_name" .
sha256sum "$work/out/$archive_name" | cut -d' ' -f1 >"$work/out/$archive_name.sha256"

# --- OCI image layout (busybox-static) ------------------------------------------------------
r="$work/rootfs"
mkdir -p "$r/bin" "$r/tmp" "$r/etc"
install -m 0755 "$x/bin/busybox" "$r/bin/busybox" 2>/dev/null || install -m 0755 "$x/usr/bin/busybox" "$r/bin/busybox"
for app in sh echo cat ls sleep id httpd nc wget hostname mkdir; do ln -s busybox "$r/bin/$app"; done
echo 'root:x:0:0:root:/:/bin/sh' >"$r/etc/passwd"
echo 'root:x:0:' >"$r/etc/group"
oci="$work/oci"
mkdir -p "$oci/blobs/sha256"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$r" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"
blob() { # FILE -> digest, stores the blob
  local d
  d=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$oci/blobs/sha256/$d"
  echo "$d"
}
layer=$(blob "$work/layer.tar.gz")
layer_size=$(stat -c %s "$work/layer.tar.gz")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$work/config.json"
config=$(blob "$work/config.json")
config_size=$(stat -c %s "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json")
manifest_size=$(stat -c %s "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"docker.io/library/lima-test:latest","org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" >"$oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$oci" -cf "$work/out/test-oci-image.tar" .

date -u +%Y-%m-%dT%H:%M:%SZ >"$work/out/.done"
rm -rf "$out_dir"
mv -T "$work/out" "$out_dir"
for d in "$base_dir"/*/; do
  d=${d%/}
  name=${d##*/}
  [[ "$name" =~ ^[0-9a-f]{16}$ ]] && [ "$name" != "$key" ] && rm -rf "$d"
done
log "done: $(du -sh "$out_dir" | cut -f1) in $out_dir"
result
