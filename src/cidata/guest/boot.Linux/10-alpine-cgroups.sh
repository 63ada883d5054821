#!/bin/bash
# Alpine (OpenRC) mounts /sys/fs/cgroup only through its `cgroups` service, which
# container engines need; plain mode skips this.
set -eu
[ -f /etc/alpine-release ] || exit 0
rc-service cgroups start
