# shellcheck shell=bash disable=SC2034 # the variables are read by the scripts that source this file
# What the scripts in hack/ share: the containerd versions under test, where their binaries are,
# the cache directory. Source it (". hack/lib.sh"); it defines variables and functions only.
#
# A containerd version is named on the command line and in AUTOKILL_VERSIONS / BENCH_CONTAINERD /
# AUTOKILL_DEMO_CONTAINERD as its minor ("1.7"), its pinned patch ("1.7.35") or a directory
# holding containerd and ctr (used as is, not built).

AUTOKILL_CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}

# The pinned patch release of each minor built from the Go module proxy: the latest one the proxy
# served when it was pinned (`go list -m -versions github.com/containerd/containerd[/v2]`).
# 1.6 is Debian 12's package (1.6.20), not built.
declare -A AK_PINNED=(
	[1.7]=1.7.35
	[2.2]=2.2.9
	[2.4]=2.4.2
)

# Which versions each tier runs. The host tier covers every start handshake (docs/design.md):
# 1.6 plain address, 1.7 and 2.2 JSON, 2.4 protobuf BootstrapResult. The VM tier boots once per
# version, so it runs the oldest and the newest.
AK_HOST_VERSIONS="1.6 1.7 2.2 2.4"
AK_VM_VERSIONS="1.6 2.4"

# The reference run (make test-ref): the runtime-agnostic integration tests against containerd's
# runc shim, on one containerd, so that CI shows they describe runc's behaviour. Convention: a test
# that must hold for any runtime is named TestAPI... (the ctr tests predate it and are included).
AK_REF_VERSION=2.4
AK_REF_TESTS='^(TestAPI|TestCtr)'

# The commands built for a containerd from the proxy (what the tests and the benchmark run).
AK_CONTAINERD_CMDS=(containerd ctr containerd-shim-runc-v2)

# ak_minor VERSION: "1.7" for 1.7, 1.7.35, v1.7.35; empty for anything else.
ak_minor() {
	[[ $1 =~ ^v?([0-9]+)\.([0-9]+)(\.[0-9]+)?$ ]] && echo "${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
}

# ak_pinned VERSION: the pinned patch release ("1.7" -> "1.7.35"); "1.6" for Debian's; fails for
# a version that is not pinned here (a different patch of a pinned minor included).
ak_pinned() {
	local m
	m=$(ak_minor "$1") || return 1
	if [ "$m" = 1.6 ]; then
		echo 1.6
		return 0
	fi
	[ -n "${AK_PINNED[$m]:-}" ] || return 1
	case ${1#v} in
	"$m" | "${AK_PINNED[$m]}") echo "${AK_PINNED[$m]}" ;;
	*) return 1 ;;
	esac
}

# ak_bin_dir VERSION|DIR: the directory with containerd, ctr and containerd-shim-runc-v2.
ak_bin_dir() {
	local p
	if [[ $1 == */* ]]; then
		echo "$1"
	elif p=$(ak_pinned "$1"); then
		if [ "$p" = 1.6 ]; then echo /usr/bin; else echo "$AUTOKILL_CACHE/containerd-$p/bin"; fi
	else
		printf 'unknown containerd version %q: want one of 1.6 %s (minor or pinned patch) or a directory\n' \
			"$1" "$(ak_pinned_list)" >&2
		return 1
	fi
}

# ak_pinned_list: "1.7.35 2.2.9 2.4.2".
ak_pinned_list() {
	local m out=()
	for m in $(printf '%s\n' "${!AK_PINNED[@]}" | sort -V); do out+=("${AK_PINNED[$m]}"); done
	echo "${out[*]}"
}

# ak_module VERSION: the Go module of a pinned version (1.x and 2.x live in different modules).
ak_module() {
	case $1 in
	1.*) echo github.com/containerd/containerd ;;
	*) echo github.com/containerd/containerd/v2 ;;
	esac
}

# ak_failures LOG: the lines of a test log that name what failed (failed tests, panics, a timeout),
# at most 30, so that a tier's closing summary says which test broke even when only the end of a
# long CI log is kept.
ak_failures() {
	grep -E -e '--- FAIL|^(\[vm\] )?panic:|test timed out after|^(\[vm\] )?FAIL' "$1" 2>/dev/null | head -n 30 || true
}

# --- critest through containerd's CRI (hack/cri/) -------------------------------------------
# Versions built from the module proxy, and where they are cached.
AK_CRI_TOOLS_VERSION=v1.37.0 # cri-tools: critest and crictl
AK_REGISTRY_VERSION=v3.1.2   # the distribution registry serving the test images
AK_CNI_VERSION=v1.10.0       # containernetworking/plugins
AK_CRI_CACHE=$AUTOKILL_CACHE/cri
# The CNI plugins the CRI config uses (portmap also needs Debian's iptables).
AK_CNI_PLUGINS=(main/bridge main/loopback ipam/host-local meta/portmap)

# ak_free_port: a TCP port nobody listens on at 127.0.0.1 now (from the ephemeral range's top).
ak_free_port() {
	local p
	for p in $(seq 32000 32999 | shuf); do
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
	done
	return 1
}

# ak_seconds DURATION: 90, 90s, 30m, 1h -> seconds.
ak_seconds() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}
