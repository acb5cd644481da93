#!/usr/bin/env bash
# A private containerd, everything under one directory.
#   hack/containerd.sh start DIR [BIN_DIR|VERSION]   start it (default containerd 1.6, /usr/bin;
#                                                    VERSION as in hack/lib.sh: 1.7, 2.4.2, ...)
#   hack/containerd.sh stop DIR                       stop it (SIGTERM, then SIGKILL); shims keep running
#   hack/containerd.sh purge DIR                      stop, kill its shims, unmount, remove DIR
#   hack/containerd.sh status DIR                     exit 0 when it answers
# The shim's directory (dirname of $AUTOKILL_SHIM, default <repo>/bin/containerd-shim-autokill-v1) goes
# first on containerd's PATH, then BIN_DIR (for the matching containerd-shim-runc-v2).
# Files: DIR/config.toml, DIR/containerd.sock (+ .ttrpc), DIR/root, DIR/state, DIR/containerd.log,
# DIR/containerd.pid, DIR/bin-dir. Use: ctr --address DIR/containerd.sock ...
# AUTOKILL_CONTAINERD_DEBUG=1 sets log level debug (containerd then passes -debug to shims).
# AUTOKILL_CONTAINERD_CRI=FILE enables the CRI plugins (and NRI) and appends FILE to the config, its
# @DIR@ replaced (hack/cri/critest.sh).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib.sh
. "$REPO/hack/lib.sh"
SHIM=${AUTOKILL_SHIM:-$REPO/bin/containerd-shim-autokill-v1}

log() { printf '[containerd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,15p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD=$1
DIR=$2

answers() {
	local bd
	bd=$(cat "$DIR/bin-dir" 2>/dev/null || echo /usr/bin)
	timeout 5 "$bd/ctr" --address "$DIR/containerd.sock" version >/dev/null 2>&1
}

running_pid() {
	local pid
	pid=$(cat "$DIR/containerd.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The config: integration/testdata/containerd.toml, the template the integration harness fills in
# too (see there for the @KEY@ and @1@/@2@ forms).
write_config() {
	local major=$1 level=info keep=@1@ drop=@2@
	[ "${AUTOKILL_CONTAINERD_DEBUG:-0}" = 1 ] && level=debug
	[ "$major" -lt 2 ] || { keep=@2@; drop=@1@; }
	case $DIR in *[\\\"\|\&]*) die "containerd directory $DIR: the config template takes no \\ \" | or &" ;; esac
	sed -e '/^#/d' -e "/^$drop/d" -e "s/^$keep//" -e "s|@DIR@|$DIR|g" -e "s|@LEVEL@|$level|g" -e "s|@STATE_TIMEOUT@|2s|g" \
		"$REPO/integration/testdata/containerd.toml" >"$DIR/config.toml"
	if [ -n "${AUTOKILL_CONTAINERD_CRI:-}" ]; then
		[ -f "$AUTOKILL_CONTAINERD_CRI" ] || die "AUTOKILL_CONTAINERD_CRI=$AUTOKILL_CONTAINERD_CRI: no such file"
		sed -i -E '/^disabled_plugins/s/"io\.containerd\.(grpc\.v1\.cri|cri\.v1\.images|cri\.v1\.runtime|podsandbox\.controller\.v1\.podsandbox|nri\.v1\.nri)", //g' \
			"$DIR/config.toml"
		printf '\n' >>"$DIR/config.toml"
		sed -e "s|@DIR@|$DIR|g" "$AUTOKILL_CONTAINERD_CRI" >>"$DIR/config.toml"
	fi
}

start() {
	local bd=$1 pid ver major deadline
	[ "$(id -u)" -eq 0 ] || die "must run as root"
	[ -x "$bd/containerd" ] || die "no containerd in $bd"
	[ -x "$bd/ctr" ] || die "no ctr in $bd"
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	if pid=$(running_pid); then
		die "containerd already running in $DIR (pid $pid)"
	fi
	ver=$("$bd/containerd" --version)
	# "containerd github.com/containerd/containerd 1.6.20~ds1 ..." or ".../v2 v2.4.2 ..."
	major=$(echo "$ver" | awk '{print $3}' | sed 's/^v//' | cut -d. -f1)
	[[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse version from: $ver"
	echo "$bd" >"$DIR/bin-dir"
	write_config "$major"
	log "starting $ver in $DIR (shim dir $(dirname "$SHIM") first on PATH)"
	# On a cgroup v2 host where we run in the root cgroup (the VM's test init), containerd gets a
	# cgroup of its own, as a service manager gives it: its CRI decides from its own cgroup's files
	# whether the swap controller exists (memory.swap.max), which the root cgroup never has.
	local cg=
	if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ "$(cat /proc/self/cgroup)" = "0::/" ]; then
		cg=/sys/fs/cgroup/autokill-containerd-$(basename "$DIR")
		mkdir -p "$cg"
		echo "$cg" >"$DIR/cgroup"
	fi
	# shellcheck disable=SC2016 # expanded by the inner bash, which then becomes containerd
	PATH="$(dirname "$SHIM"):$bd:$PATH" CG=$cg setsid bash -c \
		'[ -z "$CG" ] || echo $$ >"$CG/cgroup.procs"; exec "$@"' containerd \
		"$bd/containerd" --config "$DIR/config.toml" >>"$DIR/containerd.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$DIR/containerd.pid"
	deadline=$((SECONDS + 30))
	until answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$DIR/containerd.log" >&2
			die "containerd exited during start-up"
		fi
		if [ $SECONDS -ge $deadline ]; then
			tail -n 30 "$DIR/containerd.log" >&2
			die "containerd did not answer within 30s"
		fi
		sleep 0.2
	done
	log "ready: pid $pid, ctr --address $DIR/containerd.sock"
}

stop() {
	local pid
	pid=$(running_pid) || { log "not running ($DIR)"; return 0; }
	kill -TERM "$pid"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "containerd $pid ignored SIGTERM for 20s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$DIR/containerd.pid"
	log "stopped containerd $pid"
}

purge() {
	local f pid m
	[ -d "$DIR" ] || return 0
	DIR=$(cd "$DIR" && pwd)
	stop
	# Shims started by this containerd carry "-address DIR/containerd.sock" on their command line.
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "-address $DIR/containerd.sock "; then
			log "killing shim $pid"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	sleep 0.5
	# Unmount everything below DIR, deepest first.
	awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	# containerd's own cgroup (start): empty once it and its shims are gone.
	if [ -s "$DIR/cgroup" ]; then
		rmdir "$(cat "$DIR/cgroup")" 2>/dev/null || log "cgroup $(cat "$DIR/cgroup") not empty: left"
	fi
	rm -rf "$DIR"
	log "purged $DIR"
}

case "$CMD" in
start)
	bd=$(ak_bin_dir "${3:-1.6}") || exit 2
	start "$bd"
	;;
stop) stop ;;
purge) purge ;;
status) answers ;;
*) usage ;;
esac
