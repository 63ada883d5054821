#!/bin/sh
# Alpine has no bash: scripts that start with #!/bin/bash (the provision scripts, most
# boot modules) get busybox ash, which understands `set -o pipefail` and most of what
# they use. A wrapper, since /bin/ash is itself a link to busybox.
[ -f /etc/alpine-release ] || exit 0
[ -e /bin/bash ] && exit 0
printf '#!/bin/sh\nexec /bin/ash "$@"\n' >/bin/bash.tmp
chmod 0755 /bin/bash.tmp
mv -f /bin/bash.tmp /bin/bash
