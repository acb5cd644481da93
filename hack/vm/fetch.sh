#!/usr/bin/env bash
# Prepares the VM tier: a Linux >= 7.1 kernel from Debian sid and a tiny initramfs.
#   usage: hack/vm/fetch.sh [--refresh] [--quiet]
# Idempotent; run as root. Everything lands in $AUTOKILL_CACHE/vm (default /var/cache/autokill/vm):
#   apt/            private apt state for sid (sources, lists, cache) - the host's apt is not touched
#   debs/           the downloaded kernel packages
#   kernels/KVER/   dpkg -x of them, plus vmlinux (extracted from vmlinuz) and initramfs.cpio
#   kernel.env      what hack/vm/run.sh boots: KVER, KERNEL, INITRD, MODDIR
# The kernel: linux-binary-$AUTOKILL_VM_KVER + linux-modules-... + linux-base-... (default KVER
# 7.2.13+deb14-cloud-amd64); when sid no longer has it, whatever linux-image-cloud-amd64 points to,
# if that is >= 7.1. --refresh re-reads sid's package lists and re-resolves the kernel.
# The initramfs is rebuilt whenever hack/vm/init changes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}
VMC=$CACHE/vm
PREFERRED_KVER=${AUTOKILL_VM_KVER:-7.2.13+deb14-cloud-amd64}
MIN_MAJOR=7 MIN_MINOR=1
# Loaded by the initramfs: virtio_mmio (-M microvm puts its devices there; virtio-pci, virtiofs,
# fuse and virtio_console are built in) and overlay (the root is a tmpfs overlay on the share).
INITRD_MODULES=(kernel/drivers/virtio/virtio_mmio kernel/fs/overlayfs/overlay)
# systemd and dbus: AUTOKILL_VM_INIT=systemd boots them as the guest's init (see init).
HOST_PACKAGES=(qemu-system-x86 cpio busybox-static systemd dbus)

REFRESH=0 QUIET=0
for a in "$@"; do
	case $a in
	--refresh) REFRESH=1 ;;
	--quiet) QUIET=1 ;;
	*) sed -n '2,12p' "$0" >&2; exit 2 ;;
	esac
done

log() { [ "$QUIET" = 1 ] || printf '[vm-fetch] %s\n' "$*" >&2; }
die() { printf '[vm-fetch] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$VMC"
# One fetch at a time (go test -exec may start several run.sh at once).
exec 9>"$VMC/.lock"
flock 9

# --- host packages -------------------------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for f in /usr/bin/qemu-system-x86_64 /usr/lib/qemu/virtiofsd /bin/busybox /usr/bin/cpio; do
	[ -x "$f" ] || die "$f missing (expected from: ${HOST_PACKAGES[*]})"
done

# --- fast path: everything cached and the initramfs matches hack/vm/init -----------------------
init_sum() { sha256sum <"$HERE/init" | cut -c1-16; }
cached_ok() {
	[ -f "$VMC/kernel.env" ] || return 1
	# shellcheck disable=SC1091
	(. "$VMC/kernel.env" && [ -f "$KERNEL" ] && [ -f "$INITRD" ] && [ -d "$MODDIR" ] &&
		[ "$(cat "$INITRD.sum" 2>/dev/null)" = "$(init_sum)" ])
}
if [ "$REFRESH" = 0 ] && cached_ok; then
	# shellcheck disable=SC1091 # written by an earlier run
	(. "$VMC/kernel.env" && log "cached: kernel $KVER ($KERNEL)")
	exit 0
fi

# --- resolve and download the kernel from sid ----------------------------------------------
APTD=$VMC/apt
mkdir -p "$APTD/lists/partial" "$APTD/cache/archives/partial" "$VMC/debs"
cat >"$APTD/sid.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
: >"$APTD/status"
APT_OPTS=(-o "Dir::Etc::sourcelist=$APTD/sid.sources" -o Dir::Etc::sourceparts=/dev/null
	-o "Dir::State::Lists=$APTD/lists" -o "Dir::Cache=$APTD/cache" -o "Dir::State::status=$APTD/status"
	-o APT::Sandbox::User=root -o Debug::NoLocking=1 -q)
apt_sid() { apt-get "${APT_OPTS[@]}" "$@"; }
sid_has() { apt-cache "${APT_OPTS[@]}" show "$1" >/dev/null 2>&1; }

lists_fresh() { [ -n "$(find "$APTD/lists" -maxdepth 1 -name '*_Packages*' -print -quit)" ]; }
UPDATED=0
sid_update() {
	[ "$UPDATED" = 0 ] || return 0
	log "apt-get update (sid, private lists under $APTD)"
	apt_sid update >/dev/null || die "apt-get update of sid failed"
	UPDATED=1
}
if [ "$REFRESH" = 1 ] || ! lists_fresh; then
	sid_update
fi

KVER=""
kver_of_meta() {
	# linux-image-cloud-amd64 depends on linux-image-KVER (= V): print KVER
	apt-cache "${APT_OPTS[@]}" show linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' |
		sed -n 's/^ *linux-image-\([0-9][^ ]*-cloud-amd64\).*/\1/p' | head -1
}
# Lists may be old: read them again before concluding that the preferred kernel is gone.
if sid_has "linux-binary-$PREFERRED_KVER" || { sid_update && sid_has "linux-binary-$PREFERRED_KVER"; }; then
	KVER=$PREFERRED_KVER
else
	KVER=$(kver_of_meta)
	[ -n "$KVER" ] || die "sid has neither linux-binary-$PREFERRED_KVER nor a resolvable linux-image-cloud-amd64"
	log "linux-binary-$PREFERRED_KVER is no longer in sid; linux-image-cloud-amd64 points to $KVER"
fi
major=${KVER%%.*}
rest=${KVER#*.}
minor=${rest%%[!0-9]*}
if [ "$major" -lt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -lt "$MIN_MINOR" ]; }; then
	die "sid's cloud kernel is $KVER, older than $MIN_MAJOR.$MIN_MINOR: it lacks CLONE_AUTOREAP/CLONE_PIDFD_AUTOKILL; set AUTOKILL_VM_KVER to a >= $MIN_MAJOR.$MIN_MINOR version still in sid"
fi

# Since 7.x Debian splits the kernel: linux-binary-KVER (vmlinuz), linux-modules-KVER, linux-base-KVER
# (config, modules.builtin/order). Older layouts ship everything in linux-image-KVER.
PKGS=()
for p in linux-binary linux-modules linux-base; do
	sid_has "$p-$KVER" && PKGS+=("$p-$KVER")
done
if [ ${#PKGS[@]} -eq 0 ]; then
	PKGS=("linux-image-$KVER")
	sid_has "${PKGS[0]}" || die "no package for kernel $KVER in sid"
fi

KDIR=$VMC/kernels/$KVER
ROOT=$KDIR/root
if [ ! -f "$ROOT/.extracted" ]; then
	log "downloading ${PKGS[*]}"
	(cd "$VMC/debs" && apt_sid download "${PKGS[@]}" >/dev/null) || die "apt-get download ${PKGS[*]} failed"
	rm -rf "$ROOT"
	mkdir -p "$ROOT"
	for p in "${PKGS[@]}"; do
		# shellcheck disable=SC2012 # Debian package names hold no newline
		deb=$(ls -t "$VMC/debs/${p}"_*.deb | head -1)
		dpkg -x "$deb" "$ROOT"
	done
	touch "$ROOT/.extracted"
fi

MODDIR=""
for d in "$ROOT/usr/lib/modules/$KVER" "$ROOT/lib/modules/$KVER"; do
	[ -d "$d/kernel" ] && MODDIR=$d && break
done
[ -n "$MODDIR" ] || die "no modules directory for $KVER in ${PKGS[*]}"
VMLINUZ=""
for f in "$MODDIR/vmlinuz" "$ROOT/boot/vmlinuz-$KVER"; do
	[ -f "$f" ] && VMLINUZ=$f && break
done
[ -n "$VMLINUZ" ] || die "no vmlinuz for $KVER in ${PKGS[*]}"
CONFIG=""
for f in "$MODDIR/config" "$ROOT/boot/config-$KVER"; do
	[ -f "$f" ] && CONFIG=$f && break
done

# modules.dep, so that the guest's busybox modprobe can autoload the rest of the modules.
if [ ! -f "$MODDIR/modules.dep" ]; then
	log "depmod $KVER"
	busybox depmod -b "${MODDIR%/lib/modules/"$KVER"}" "$KVER" || die "depmod failed"
fi

# --- vmlinux: the uncompressed kernel boots about 0.5 s faster (PVH entry, no decompression) ---
# A bzImage holds the compressed vmlinux at some offset: find the first compression magic whose
# stream decompresses to an ELF file. Needs CONFIG_PVH for qemu to boot it directly.
extract_vmlinux() {
	local in=$1 out=$2 magic tool off
	for spec in '\x28\xb5\x2f\xfd:zstd -dcq' '\xfd\x37\x7a\x58\x5a\x00:xz -dcq' '\x1f\x8b\x08:gzip -dcq' \
		'\x02\x21\x4c\x18:lz4 -dcq' '\x5d\x00\x00\x00:unlzma -c'; do
		magic=${spec%%:*} tool=${spec#*:}
		command -v "${tool%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$in" 2>/dev/null | cut -d: -f1 | head -5); do
			tail -c +$((off + 1)) "$in" | $tool >"$out.tmp" 2>/dev/null || true
			if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
				mv "$out.tmp" "$out"
				return 0
			fi
		done
	done
	rm -f "$out.tmp"
	return 1
}
KERNEL=$VMLINUZ
if [ -n "$CONFIG" ] && grep -q '^CONFIG_PVH=y' "$CONFIG"; then
	if [ -f "$KDIR/vmlinux" ] || extract_vmlinux "$VMLINUZ" "$KDIR/vmlinux"; then
		KERNEL=$KDIR/vmlinux
	else
		log "could not extract vmlinux from $VMLINUZ; booting the bzImage"
	fi
fi

# --- initramfs ---------------------------------------------------------------------------------
# Uncompressed newc cpio: static busybox, two modules (decompressed: busybox insmod cannot take .xz),
# /init. The second stage of hack/vm/init runs from the switched root, see there.
INITRD=$KDIR/initramfs.cpio
if [ "$(cat "$INITRD.sum" 2>/dev/null)" != "$(init_sum)" ] || [ ! -f "$INITRD" ]; then
	log "building $INITRD"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp"/{bin,dev,proc,sys,mnt/host,mnt/rw,mnt/root,modules}
	cp /bin/busybox "$tmp/bin/busybox"
	ln -s busybox "$tmp/bin/sh"
	mknod -m 600 "$tmp/dev/console" c 5 1
	mknod -m 666 "$tmp/dev/null" c 1 3
	cp "$HERE/init" "$tmp/init"
	chmod 755 "$tmp/init"
	for m in "${INITRD_MODULES[@]}"; do
		if [ -f "$MODDIR/$m.ko.xz" ]; then
			xz -dc "$MODDIR/$m.ko.xz" >"$tmp/modules/$(basename "$m").ko"
		elif [ -f "$MODDIR/$m.ko.zst" ]; then
			zstd -dcq "$MODDIR/$m.ko.zst" >"$tmp/modules/$(basename "$m").ko"
		elif [ -f "$MODDIR/$m.ko" ]; then
			cp "$MODDIR/$m.ko" "$tmp/modules/"
		elif grep -q "^$m.ko" "$MODDIR/modules.builtin" 2>/dev/null; then
			: # built in
		else
			die "module $m not found for $KVER"
		fi
	done
	printf '%s\n' "$KVER" >"$tmp/kver"
	(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$INITRD.tmp"
	[ "$(stat -c %s "$INITRD.tmp")" -gt 1000000 ] || die "initramfs came out empty (cpio broken?)"
	mv "$INITRD.tmp" "$INITRD"
	init_sum >"$INITRD.sum"
fi

cat >"$VMC/kernel.env.tmp" <<EOF
KVER=$KVER
KERNEL=$KERNEL
INITRD=$INITRD
MODDIR=$MODDIR
EOF
mv "$VMC/kernel.env.tmp" "$VMC/kernel.env"
log "kernel $KVER: $KERNEL, initramfs $INITRD"
