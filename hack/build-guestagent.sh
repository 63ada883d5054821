#!/usr/bin/env bash
# Builds lima-guestagent as a static x86_64 Linux binary (glibc, crt-static),
# so it runs in any x86_64 guest whatever its libc, and prints its path.
# The host agent ships it in cidata when LIMA_GUESTAGENT names it (or when it
# lies next to limactl as lima-guestagent).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
# Only the final link of this binary gets the flag; the library and its
# dependencies are ordinary rlibs.
cargo rustc -q --release --bin lima-guestagent --target "$target" -- -C target-feature=+crt-static -C strip=symbols >&2
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/$target/release/lima-guestagent

# A static executable has no program interpreter (no PT_INTERP).
if command -v file >/dev/null 2>&1; then
  desc=$(file -b "$bin")
  case "$desc" in
  *"dynamically linked"* | *interpreter*)
    echo "build-guestagent: $bin is not static: $desc" >&2
    exit 1
    ;;
  esac
fi
# glibc's ldd says "not a dynamic executable" (static) or "statically linked" (static-pie).
deps=$(ldd "$bin" 2>&1 || true)
case "$deps" in
*"not a dynamic executable"* | *"statically linked"*) ;;
*)
  echo "build-guestagent: $bin links shared libraries:" >&2
  echo "$deps" >&2
  exit 1
  ;;
esac
echo "$bin"
