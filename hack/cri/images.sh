#!/usr/bin/env bash
# Builds every image critest v1.37.0 pulls, from Debian packages, and stores them in a registry's
# storage directory under their upstream names. Cached: $AK_CRI_CACHE/registry-<recipe>/ (recipe =
# the sha256 of this script, hack/oci.sh and hack/cri/images/*), rebuilt only when one of those
# changed or with AUTOKILL_REBUILD_IMAGE=1.
#   usage: hack/cri/images.sh       prints the storage directory (last line of stdout)
# The directory holds storage/ (the registry's root directory), digest (test-image-digest's manifest
# digest: critest is built with it, hack/cri/tools.sh) and images (one upstream reference a line).
# Needs hack/cri/tools.sh's registry.
#
# What the images hold, after critest's source (pkg/validate, pkg/framework) and images/*:
#   base: Debian's dynamic busybox with hard links for its applets (a symlinked applet would make
#     the MaskedPaths spec mask /bin/busybox itself; the static busybox runs applets in-process and
#     the spec would not see them masked), its libraries, /etc/passwd and /etc/group as the official
#     busybox image has them, and static pgrep and ipcs (hack/cri/images/, not in Debian's busybox).
#   nginx (registry.k8s.io/e2e-test-images/nginx:1.14-2 and gcr.io/k8s-staging-cri-tools/hostnet-nginx-
#     <arch>): base + Debian's nginx and the libraries it links, master as root, workers as www-data,
#     on :80 (hostnet: :12003), pid file /var/run/nginx.pid.
#   httpd:2.4.39-4: base + busybox's httpd on :80, announcing "httpd" on stderr as Apache does.
#   nonewprivs:1.3: a setuid-root static program printing "Effective uid: N".
#   pause 3.9 and 3.10 (registry.k8s.io, k8s.gcr.io): a static pause as uid 65535.
#   test-image-*: base + one empty file named after the image (and tag), or base with a USER.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=hack/lib.sh
. "$REPO/hack/lib.sh"
# shellcheck source=hack/oci.sh
. "$REPO/hack/oci.sh"

log() { printf '[cri-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

RECIPE=$(cat "$0" "$REPO/hack/oci.sh" "$HERE"/images/* | sha256sum | cut -c1-16)
OUT=$AK_CRI_CACHE/registry-$RECIPE
REGISTRY=$AK_CRI_CACHE/bin/registry-$AK_REGISTRY_VERSION

if [ -s "$OUT/digest" ] && [ "${AUTOKILL_REBUILD_IMAGE:-0}" != 1 ]; then
	echo "$OUT"
	exit 0
fi
for t in apt-get dpkg ldd tar gzip sha256sum gcc curl; do command -v $t >/dev/null || die "$t not found"; done
[ -x "$REGISTRY" ] || die "no $REGISTRY: run hack/cri/tools.sh"

WORK=$(mktemp -d /tmp/autokill-cri-images.XXXXXX)
REG_PID=
cleanup() {
	[ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
ARCH=$(dpkg --print-architecture)
E2E=registry.k8s.io/e2e-test-images
STAGING=gcr.io/k8s-staging-cri-tools

# --- Debian packages ---------------------------------------------------------------------
mkdir -p deb && chmod 0777 deb # apt-get download runs as _apt when it can
(cd deb && apt-get download -q busybox nginx >/dev/null 2>&1) || {
	apt-get update -qq && (cd deb && apt-get download -q busybox nginx >/dev/null)
}
for p in busybox nginx; do
	dpkg -x deb/"${p}"_*.deb "pkg-$p"
	log "using $(basename deb/"${p}"_*.deb)"
done

# libs ROOTFS BINARY: copies the shared libraries BINARY links (as the host's loader resolves
# them: this is a Debian 12 host, the same packages) into ROOTFS at the same paths.
libs() {
	local l
	ldd "$2" | grep -q 'not found' && die "$2: libraries missing on this host: $(ldd "$2" | grep 'not found')"
	for l in $(ldd "$2" | grep -o '/[^ ]*'); do
		mkdir -p "$1/$(dirname "$l")"
		cp -L "$l" "$1/$l"
	done
}

cc() { gcc -static -O2 -s -o "$2" "$HERE/images/$1.c" || die "building $1 (gcc -static needs libc6-dev)"; }

# --- base --------------------------------------------------------------------------------
B=rootfs-base
mkdir -p $B/bin $B/etc $B/dev $B/proc $B/sys $B/tmp $B/run $B/var/run $B/root $B/home $B/usr/bin $B/usr/sbin $B/sbin
cp pkg-busybox/bin/busybox $B/bin/busybox
for a in $(pkg-busybox/bin/busybox --list); do
	[ "$a" = busybox ] || ln $B/bin/busybox "$B/bin/$a"
done
libs $B $B/bin/busybox
cc pgrep $B/bin/pgrep
cc ipcs $B/bin/ipcs
cat >$B/etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat >$B/etc/group <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
G
chmod -R go-w $B
chmod 0700 $B/root
chmod 1777 $B/tmp

# --- the other layers ----------------------------------------------------------------------
# nginx_rootfs PORT: Debian's nginx on PORT, what the e2e nginx images do.
nginx_rootfs() {
	local R=rootfs-nginx-$1
	mkdir -p "$R"/usr/sbin "$R"/etc/nginx "$R"/var/log/nginx "$R"/var/lib/nginx "$R"/var/lock "$R"/usr/share/nginx/html
	cp pkg-nginx/usr/sbin/nginx "$R"/usr/sbin/nginx
	libs "$R" "$R"/usr/sbin/nginx
	# The base has libc and the loader already.
	find "$R" -name '*.so*' | while read -r l; do [ ! -e "$B/${l#"$R"/}" ] || rm -f "$l"; done
	cat >"$R"/etc/nginx/nginx.conf <<N
user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log /dev/stdout;
    server {
        listen $1;
        root /usr/share/nginx/html;
        index index.html;
    }
}
N
	echo '<html><body><h1>Welcome to nginx!</h1></body></html>' >"$R"/usr/share/nginx/html/index.html
	chmod -R go-w "$R"
}
nginx_rootfs 80
nginx_rootfs 12003

R=rootfs-httpd
mkdir -p $R/usr/local/apache2/htdocs $R/usr/local/bin
echo '<html><body><h1>It works!</h1></body></html>' >$R/usr/local/apache2/htdocs/index.html
cat >$R/usr/local/bin/httpd-foreground <<'S'
#!/bin/sh
echo "httpd: busybox httpd serving /usr/local/apache2/htdocs on :80" >&2
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
S
chmod -R go-w $R
chmod 0755 $R/usr/local/bin/httpd-foreground

R=rootfs-nonewprivs
mkdir -p $R/usr/local/bin
cc nonewprivs $R/usr/local/bin/nonewprivs
chmod 4755 $R/usr/local/bin/nonewprivs

R=rootfs-pause
mkdir -p $R
cc pause $R/pause

R=rootfs-predefined-group
mkdir -p $R/etc $R/home/default-user
cp $B/etc/passwd $B/etc/group $R/etc/
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >>$R/etc/passwd
printf '%s\n' 'default-user:x:1000:' 'group-defined-in-image:x:50000:default-user' >>$R/etc/group
chmod -R go-w $R

# file_rootfs NAME: a layer with one empty file /NAME.
file_rootfs() {
	mkdir -p "rootfs-file-$1"
	: >"rootfs-file-$1/$1"
	chmod 0644 "rootfs-file-$1/$1"
}

# --- the images ------------------------------------------------------------------------------
L=oci
oci_init $L
PATHENV='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
BASE=$(oci_layer $L $B)
H="hack/cri/images.sh"
: >images
img() { # NAME CONFIG LAYER...: an image, its name recorded
	local d
	d=$(oci_image $L "$@")
	printf '%s sha256:%s\n' "$1" "$d" >>images
}
img "$E2E/busybox:1.29-2" "{$PATHENV,\"Cmd\":[\"sh\"]}" "$H: busybox" "$BASE"
NGINX='"Cmd":["nginx","-g","daemon off;"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"'
img "$E2E/nginx:1.14-2" "{$PATHENV,$NGINX}" "$H: nginx" "$BASE" "$(oci_layer $L rootfs-nginx-80)"
img "$STAGING/hostnet-nginx-$ARCH:latest" "{$PATHENV,${NGINX/80\/tcp/12003/tcp}}" "$H: nginx" "$BASE" "$(oci_layer $L rootfs-nginx-12003)"
img "$E2E/httpd:2.4.39-4" "{$PATHENV,\"Cmd\":[\"httpd-foreground\"],\"ExposedPorts\":{\"80/tcp\":{}}}" "$H: httpd" "$BASE" "$(oci_layer $L rootfs-httpd)"
img "$E2E/nonewprivs:1.3" "{$PATHENV,\"Cmd\":[\"/usr/local/bin/nonewprivs\"]}" "$H: nonewprivs" "$BASE" "$(oci_layer $L rootfs-nonewprivs)"
PAUSE=$(oci_layer $L rootfs-pause)
for n in registry.k8s.io/pause:3.9 k8s.gcr.io/pause:3.9 registry.k8s.io/pause:3.10; do
	# 3.9 and 3.10 are different images upstream (one spec counts the tags of 3.9's image id).
	img "$n" '{"User":"65535:65535","Entrypoint":["/pause"]}' "$H: pause ${n##*:}" "$PAUSE"
done
for n in test-image-latest:latest test-image-tag:test test-image-tag:all test-image-digest:latest \
	test-image-1:latest test-image-2:latest test-image-3:latest; do
	f=${n%:latest}
	f=${f/:/-}
	file_rootfs "$f"
	img "$STAGING/$n" "{$PATHENV,\"Cmd\":[\"sh\"]}" "$H: test image" "$BASE" "$(oci_layer $L "rootfs-file-$f")"
done
file_rootfs test-image-tags
TAGS=$(oci_layer $L rootfs-file-test-image-tags)
for t in 1 2 3; do
	img "$STAGING/test-image-tags:$t" "{$PATHENV,\"Cmd\":[\"sh\"]}" "$H: test image" "$BASE" "$TAGS"
done
for u in user-uid:1002 user-username:www-data user-uid-group:1003:1004 user-username-group:www-data:1004; do
	img "$STAGING/test-image-${u%%:*}:latest" "{$PATHENV,\"Cmd\":[\"sh\"],\"User\":\"${u#*:}\"}" "$H: test image" "$BASE"
done
img "$STAGING/test-image-predefined-group:latest" "{$PATHENV,\"Cmd\":[\"sh\"],\"User\":\"1000\"}" "$H: test image" \
	"$BASE" "$(oci_layer $L rootfs-predefined-group)"
oci_index $L

# --- push: a registry on a free port of 127.0.0.1, into a fresh storage directory --------------
# blob FILE REPO DIGEST: uploaded in one request unless the repository has it.
push_blob() {
	local url=$1 repo=$2 d=$3 loc
	[ "$(curl -s -o /dev/null -w '%{http_code}' -I "$url/v2/$repo/blobs/$d")" = 200 ] && return 0
	loc=$(curl -sf -D - -o /dev/null -X POST "$url/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	[ -n "$loc" ] || die "registry refused an upload to $repo"
	case $loc in /*) loc=$url$loc ;; esac
	case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
	curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary "@$L/blobs/sha256/${d#sha256:}" "$loc" || die "uploading $d to $repo"
}

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/storage"
PORT=$(ak_free_port)
cat >registry.yml <<Y
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $OUT.tmp/storage
http:
  addr: 127.0.0.1:$PORT
Y
OTEL_TRACES_EXPORTER=none "$REGISTRY" serve registry.yml >registry.log 2>&1 &
REG_PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf "$URL/v2/" >/dev/null && break; sleep 0.1; done
curl -sf "$URL/v2/" >/dev/null || { cat registry.log >&2; die "registry did not start"; }
while read -r name digest; do
	ref=${name#*/}
	repo=${ref%:*}
	tag=${ref##*:}
	m=$L/blobs/sha256/${digest#sha256:}
	grep -o 'sha256:[0-9a-f]\{64\}' "$m" | while read -r d; do push_blob "$URL" "$repo" "$d"; done
	# Stored under the path without the host: hosts.toml maps each upstream host to this registry.
	curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
		--data-binary "@$m" "$URL/v2/$repo/manifests/$tag" || die "pushing $name"
done <images
kill "$REG_PID"
wait "$REG_PID" 2>/dev/null || true
REG_PID=

grep "^$STAGING/test-image-digest:latest " images | cut -d' ' -f2 >"$OUT.tmp/digest"
cut -d' ' -f1 images >"$OUT.tmp/images"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# The storages of older recipes.
find "$AK_CRI_CACHE" -maxdepth 1 -name 'registry-*' ! -name "registry-$RECIPE" -exec rm -rf {} +
log "$(wc -l <images) images in $OUT (test-image-digest@$(cat "$OUT/digest"))"
echo "$OUT"
