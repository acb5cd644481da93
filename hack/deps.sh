#!/usr/bin/env bash
# Installs what the tests and the demo need. Idempotent; run as root.
#   - Debian: containerd (1.6), runc, crun, busybox-static
#   - containerd 2.4.2: containerd, ctr, containerd-shim-runc-v2 built with `go install`
#     into $AUTOKILL_CACHE/containerd-2.4.2/bin (default cache: /var/cache/autokill)
set -euo pipefail

CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}
CTRD2_VERSION=v2.4.2
CTRD2_BIN=$CACHE/containerd-${CTRD2_VERSION#v}/bin
CTRD2_CMDS=(containerd ctr containerd-shim-runc-v2)

log() { printf '[deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# --- Debian packages -------------------------------------------------------
missing=()
for p in containerd runc crun busybox-static; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
	# The package enables a system containerd; the tests run private ones and do not need it.
else
	log "Debian packages present: containerd runc crun busybox-static"
fi
for b in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2; do
	[ -x "$b" ] || die "$b missing after install"
done

# --- containerd 2.4.2 --------------------------------------------------------
have_all() {
	local c
	for c in "${CTRD2_CMDS[@]}"; do [ -x "$CTRD2_BIN/$c" ] || return 1; done
}

# Another process may be building them right now (go install of the same module):
# wait for it (bounded) instead of building twice.
other_go_install() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		tr '\0' ' ' <"$f" 2>/dev/null | grep -q "go install github.com/containerd/containerd/v2/cmd/.*@${CTRD2_VERSION}" && return 0
	done
	return 1
}

if ! have_all; then
	command -v go >/dev/null || die "go is not on PATH (needed to build containerd ${CTRD2_VERSION})"
	mkdir -p "$CTRD2_BIN"
	exec 9>"$CACHE/containerd-${CTRD2_VERSION#v}.lock"
	flock 9
	deadline=$((SECONDS + 900))
	while ! have_all && other_go_install && [ $SECONDS -lt $deadline ]; do
		log "waiting for a running 'go install' of containerd ${CTRD2_VERSION}"
		sleep 5
	done
	for c in "${CTRD2_CMDS[@]}"; do
		if [ ! -x "$CTRD2_BIN/$c" ]; then
			log "building $c ${CTRD2_VERSION} into $CTRD2_BIN"
			GOBIN=$CTRD2_BIN go install "github.com/containerd/containerd/v2/cmd/$c@${CTRD2_VERSION}"
		fi
	done
	flock -u 9
fi
have_all || die "containerd ${CTRD2_VERSION} binaries missing in $CTRD2_BIN"
log "containerd ${CTRD2_VERSION}: $("$CTRD2_BIN/containerd" --version)"
log "containerd 1.6: $(/usr/bin/containerd --version)"
