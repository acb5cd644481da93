#!/usr/bin/env bash
# Installs what the tests and the demo need. Idempotent; run as root.
#   - Debian: containerd (1.6), runc, crun, busybox-static, shellcheck (make lint-sh), apparmor
#     (apparmor_parser: the VM tier loads test profiles; the VM shares this filesystem),
#     libseccomp2 and libseccomp-dev (the shim links libseccomp through cgo: internal/seccomp),
#     iptables (CNI's portmap plugin), iproute2 and curl (hack/cri/: the bridge, the registry),
#     tmux and jq (hack/cri/crictl-test.sh: a terminal for crictl exec -it, crictl's JSON)
#   - every containerd pinned in hack/lib.sh (1.7, 2.2, 2.4): containerd, ctr and
#     containerd-shim-runc-v2 built from the Go module proxy into $AUTOKILL_CACHE/containerd-<ver>/bin
#   hack/deps.sh [VERSION...]   only these containerd versions (default: every pinned one; a bin dir
#                               is skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

log() { printf '[deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# --- Debian packages -------------------------------------------------------
missing=()
for p in containerd runc crun busybox-static shellcheck apparmor libseccomp2 libseccomp-dev iptables iproute2 curl tmux jq; do
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
	log "Debian packages present: containerd runc crun busybox-static shellcheck apparmor libseccomp2 libseccomp-dev iptables iproute2 curl tmux jq"
fi
for b in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2; do
	[ -x "$b" ] || die "$b missing after install"
done

# --- containerd from the module proxy ------------------------------------------
have_all() {
	local c
	for c in "${AK_CONTAINERD_CMDS[@]}"; do [ -x "$1/$c" ] || return 1; done
}

# Another process may be building the same version by hand right now: wait for it (bounded)
# instead of building twice.
other_build() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		tr '\0' ' ' <"$f" 2>/dev/null | grep -qE "go (install|build) .*github.com/containerd/containerd(/v2)?/cmd/.*@v$1( |$)" && return 0
	done
	return 1
}

# The exclude and replace directives of a go.mod, single-line and block form, verbatim.
directives() {
	awk '
		/^(exclude|replace)[ \t]*\($/ { blk = $1; next }
		blk != "" && /^\)/ { blk = ""; next }
		blk != "" && NF && $1 !~ /^\/\// { print blk, $0; next }
		/^(exclude|replace)[ \t]/ { print }
	' "$1"
}

# build VERSION DIR: the commands of containerd VERSION into DIR.
# 2.x: `go install pkg@version`. 1.7's go.mod has an exclude directive, which `go install pkg@version`
# refuses (it would not mean the same outside containerd's own module), so 1.x is built in a
# throw-away main module that requires containerd and repeats its exclude/replace directives:
# the same build list as containerd's own build.
build() {
	local ver=$1 dir=$2 mod tmp c pkgs=()
	mod=$(ak_module "$ver")
	mkdir -p "$dir"
	if [ "${ver%%.*}" -ge 2 ]; then
		for c in "${AK_CONTAINERD_CMDS[@]}"; do
			log "building $c $ver into $dir"
			GOBIN=$dir go install "$mod/cmd/$c@v$ver"
		done
		return
	fi
	tmp=$(mktemp -d)
	cleanup+=("$tmp")
	(
		cd "$tmp"
		go mod init autokill.invalid/containerd-build >/dev/null 2>&1
		go mod download "$mod@v$ver"
		gomod=$(go mod download -json "$mod@v$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
		[ -f "$gomod" ] || die "no go.mod for $mod@v$ver from the module proxy"
		if directives "$gomod" | grep -q '=>[[:space:]]*\.'; then
			die "$mod@v$ver replaces a module by a local path: cannot build it from the proxy"
		fi
		directives "$gomod" >>go.mod
		go mod edit -require="$mod@v$ver"
		for c in "${AK_CONTAINERD_CMDS[@]}"; do pkgs+=("$mod/cmd/$c"); done
		log "building ${AK_CONTAINERD_CMDS[*]} $ver into $dir (module-mode build in $tmp)"
		GOFLAGS=-mod=mod go build -trimpath -o "$dir/" "${pkgs[@]}"
	)
}

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -ra versions <<<"$(ak_pinned_list)"
for v in "${versions[@]}"; do
	[[ $v != */* ]] || continue # a bin dir of the user's: nothing to build
	ver=$(ak_pinned "$v") || die "containerd $v is not pinned in hack/lib.sh ($(ak_pinned_list))"
	[ "$ver" != 1.6 ] || continue
	bd=$(ak_bin_dir "$ver")
	if ! have_all "$bd"; then
		command -v go >/dev/null || die "go is not on PATH (needed to build containerd $ver)"
		mkdir -p "$AUTOKILL_CACHE"
		exec 9>"$AUTOKILL_CACHE/containerd-$ver.lock"
		flock 9
		deadline=$((SECONDS + 900))
		while ! have_all "$bd" && other_build "$ver" && [ $SECONDS -lt $deadline ]; do
			log "waiting for a running build of containerd $ver"
			sleep 5
		done
		if ! have_all "$bd"; then
			t0=$SECONDS
			rm -rf "$bd.tmp"
			build "$ver" "$bd.tmp"
			mkdir -p "$bd"
			for c in "${AK_CONTAINERD_CMDS[@]}"; do mv -f "$bd.tmp/$c" "$bd/$c"; done
			rm -rf "$bd.tmp"
			log "containerd $ver built in $((SECONDS - t0)) s"
		fi
		exec 9>&-
	fi
	have_all "$bd" || die "containerd $ver binaries missing in $bd"
	log "containerd $ver: $("$bd/containerd" --version)"
done
log "containerd 1.6: $(/usr/bin/containerd --version)"
