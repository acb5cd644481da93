#!/usr/bin/env bash
# Benchmark of the autokill shim against containerd's runc shim (runc, and crun where it runs).
#   hack/bench.sh [full|quick] [extra akbench flags...]
#     full   the published numbers: writes docs/bench/{results.md,results.json,chart.png}
#     quick  a smoke run (3 runs each, 3 idle containers, burst of 5) into a temp dir; exits
#            non-zero only if a command fails, never on a time
#   BENCH_CONTAINERD   containerd versions, comma-separated, as hack/lib.sh names them: 1.6 (default),
#                      2.4, "1.6,2.4", 1.7.35, ... or bin dirs
#   BENCH_OUT          output directory (default: docs/bench for full, a temp dir for quick)
#   BENCH_CRUN_HUGETLB=1  mount a cgroup v1 hugetlb hierarchy for the run so that crun 1.8.1 accepts
#                      this hybrid cgroup layout (changes host cgroup state while it runs; undone after)
# Sets up what is missing (the shim, the image tar, the containerd versions) and runs a private containerd
# under /run/akbench, removed at the end, also on failure or interrupt. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

MODE=${1:-full}
shift || true
IMAGE_TAR=$AUTOKILL_CACHE/images/busybox.tar
VERSIONS=${BENCH_CONTAINERD:-1.6}

log() { printf '[bench] %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
case "$MODE" in full | quick) ;; *) log "usage: $0 [full|quick] [akbench flags]"; exit 2 ;; esac

# --- what the benchmark needs ------------------------------------------------------------------
[ -x bin/containerd-shim-autokill-v1 ] || make build
go build -o bin/akbench ./bench/cmd/akbench
[ -f "$IMAGE_TAR" ] || hack/build-image.sh "$IMAGE_TAR"
for v in ${VERSIONS//,/ }; do
	bd=$(ak_bin_dir "$v") || exit 2
	need=("$bd/containerd" "$bd/ctr")
	[[ $v == */* ]] || need+=("$bd/containerd-shim-runc-v2" /usr/bin/runc)
	for f in "${need[@]}"; do
		if [ ! -x "$f" ]; then
			[[ $v != */* ]] || { log "$f missing"; exit 1; }
			log "$f missing: running hack/deps.sh $v"
			hack/deps.sh "$v"
			break
		fi
	done
done

# --- run, and clean up whatever akbench could not (it cleans up itself, also on SIGINT/SIGTERM) --
mkdir -p /run/akbench
DIR=$(mktemp -d /run/akbench/run.XXXXXX)
cleanup() {
	local d
	for d in "$DIR"/containerd-*; do
		if [ -d "$d" ]; then hack/containerd.sh purge "$d" >/dev/null 2>&1 || true; fi
	done
	rm -rf "$DIR"
}
trap cleanup EXIT

args=(-mode "$MODE" -repo "$PWD" -dir "$DIR" -containerd "$VERSIONS" -image-tar "$IMAGE_TAR")
[ -n "${BENCH_OUT:-}" ] && args+=(-out "$BENCH_OUT")
[ "${BENCH_CRUN_HUGETLB:-0}" = 1 ] && args+=(-crun-hugetlb)
log "bin/akbench ${args[*]} $*"
bin/akbench "${args[@]}" "$@"
