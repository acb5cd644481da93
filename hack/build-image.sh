#!/usr/bin/env bash
# Builds, without a registry, an OCI image-layout tar of a busybox image named
# localhost/autokill/busybox:latest from Debian's busybox-static.
#   usage: hack/build-image.sh [OUT.tar]
# The result is cached at $AUTOKILL_CACHE/images/busybox.tar (default cache /var/cache/autokill);
# OUT.tar (if given) is a copy of it. The build is reproducible: same package, same digests.
# The cached tar is rebuilt when this script changed since it was built (its sha256 is kept beside
# the tar), or with AUTOKILL_REBUILD_IMAGE=1.
#
# Besides busybox the image holds two tiny static helpers for the crash tests:
#   /bin/ak-suexec UID[:GID] CMD [ARG...]  drops root with setgroups/setgid/setuid(2) and execs CMD,
#                                         as su-exec and gosu do in the entrypoints of many images
#   /bin/ak-sudo CMD [ARG...]             setuid-root (mode 4755): becomes uid 0 and execs CMD
set -euo pipefail

IMAGE_NAME=localhost/autokill/busybox:latest
CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}
CACHED=$CACHE/images/busybox.tar
OUT=${1:-$CACHED}
HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/oci.sh
. "$HACK/oci.sh"
RECIPE=$(cat "${BASH_SOURCE[0]}" "$HACK/oci.sh" | sha256sum | cut -d' ' -f1)

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

copy_out() {
	if [ "$(realpath -m "$OUT")" != "$(realpath -m "$CACHED")" ]; then
		mkdir -p "$(dirname "$OUT")"
		cp "$CACHED" "$OUT.tmp.$$" && mv "$OUT.tmp.$$" "$OUT"
	fi
	log "image $IMAGE_NAME: $OUT"
}

if [ -s "$CACHED" ] && [ "${AUTOKILL_REBUILD_IMAGE:-0}" != 1 ] &&
	[ "$(cat "$CACHED.recipe" 2>/dev/null)" = "$RECIPE" ]; then
	copy_out
	exit 0
fi

for t in apt-get dpkg tar gzip sha256sum gcc; do command -v $t >/dev/null || die "$t not found"; done

WORK=$(mktemp -d /tmp/autokill-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# --- rootfs ------------------------------------------------------------------
# apt-get download runs as the _apt user when it can; give it a directory it may write to.
mkdir -p deb && chmod 0777 deb
(cd deb && apt-get download -q busybox-static >/dev/null 2>&1) || {
	apt-get update -qq && (cd deb && apt-get download -q busybox-static >/dev/null)
}
DEB=$(ls deb/busybox-static_*.deb)
log "using $(basename "$DEB")"
dpkg -x "$DEB" pkg
[ -x pkg/bin/busybox ] || die "no bin/busybox in $DEB"

R=rootfs
mkdir -p $R/bin $R/etc $R/dev $R/proc $R/sys $R/tmp $R/run $R/root $R/usr/bin $R/usr/sbin $R/sbin
cp pkg/bin/busybox $R/bin/busybox
chmod 0755 $R/bin/busybox
for a in $(pkg/bin/busybox --list); do
	[ "$a" = busybox ] && continue
	ln -s busybox "$R/bin/$a"
done
cat >$R/etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >$R/etc/group <<'G'
root:x:0:
nogroup:x:65534:
G
chmod 0644 $R/etc/passwd $R/etc/group
chmod 0755 $R $R/bin $R/etc $R/dev $R/proc $R/sys $R/run $R/usr $R/usr/bin $R/usr/sbin $R/sbin
chmod 0700 $R/root
chmod 1777 $R/tmp

# --- test helpers: static C, no libc of the image needed ----------------------
cat >ak-suexec.c <<'C'
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
	if (argc < 3) { fprintf(stderr, "usage: ak-suexec UID[:GID] CMD [ARG...]\n"); return 2; }
	char *colon = strchr(argv[1], ':');
	uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
	gid_t gid = colon ? (gid_t)strtoul(colon + 1, NULL, 10) : (gid_t)uid;
	if (setgroups(0, NULL) || setgid(gid) || setuid(uid)) { perror("ak-suexec"); return 1; }
	execvp(argv[2], argv + 2);
	perror("ak-suexec: exec");
	return 127;
}
C
cat >ak-sudo.c <<'C'
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
	if (argc < 2) { fprintf(stderr, "usage: ak-sudo CMD [ARG...]\n"); return 2; }
	if (setgid(0) || setuid(0)) { perror("ak-sudo"); return 1; }
	execvp(argv[1], argv + 1);
	perror("ak-sudo: exec");
	return 127;
}
C
for h in ak-suexec ak-sudo; do
	gcc -static -O2 -s -o "$R/bin/$h" "$h.c" || die "building $h (gcc -static needs libc6-dev)"
done
chmod 0755 $R/bin/ak-suexec
chmod 4755 $R/bin/ak-sudo

# --- the image: hack/oci.sh's reproducible layout ---------------------------
oci_init oci
LAYER=$(oci_layer oci $R)
MANIFEST=$(oci_image oci "$IMAGE_NAME" \
	'{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"}' \
	'hack/build-image.sh: Debian busybox-static' "$LAYER")
oci_index oci
mkdir -p "$(dirname "$CACHED")"
oci_tar oci "$CACHED.tmp.$$"
mv "$CACHED.tmp.$$" "$CACHED"
echo "$RECIPE" >"$CACHED.recipe"
log "built manifest sha256:$MANIFEST (layer, diff_id, size: $LAYER)"
copy_out
