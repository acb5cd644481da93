#!/usr/bin/env bash
# Demo: kill -9 the shim daemon and watch the container die with it.
# Run as root on a fresh machine: installs what is missing, builds the shim and the image, runs a
# private containerd under $DEMO_DIR (default /run/autokill-demo) and cleans everything up at the end.
#   AUTOKILL_RUNTIME          default io.containerd.autokill.v1 (io.containerd.runc.v2 for comparison)
#   AUTOKILL_DEMO_CONTAINERD  1.6 (Debian's, default) or another version pinned in hack/lib.sh (2.4, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=hack/lib.sh
. hack/lib.sh

RUNTIME=${AUTOKILL_RUNTIME:-io.containerd.autokill.v1}
VERSION=${AUTOKILL_DEMO_CONTAINERD:-1.6}
DEMO_DIR=${DEMO_DIR:-/run/autokill-demo}
NS=autokill-demo
ID=demo
IMAGE=localhost/autokill/busybox:latest
IMAGE_TAR=$AUTOKILL_CACHE/images/busybox.tar
export AUTOKILL_SHIM=${AUTOKILL_SHIM:-$REPO/bin/containerd-shim-autokill-v1}

BIN=$(ak_bin_dir "$VERSION") || exit 2
CTR=("$BIN/ctr" --address "$DEMO_DIR/containerd.sock" --namespace "$NS")

step=0
say() { step=$((step + 1)); printf '\n\033[1m== %d. %s\033[0m\n' "$step" "$*"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }
pidlist() { local IFS=,; echo "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

# Processes in the container's cgroup (any hierarchy), found from /proc without containerd or shim.
container_pids() {
	local f pid
	for f in /proc/[0-9]*/cgroup; do
		if grep -qE ":/$NS/$ID(/|\$)" "$f" 2>/dev/null; then
			pid=${f#/proc/}
			echo "${pid%/cgroup}"
		fi
	done
}

# The shim daemon: containerd-shim-* with "-id demo" and our containerd's address, not start/delete.
shim_pid() {
	local f pid args
	for f in /proc/[0-9]*/cmdline; do
		args=$(tr '\0' ' ' <"$f" 2>/dev/null) || continue
		case "$args" in
		*containerd-shim*"-id $ID "*"-address $DEMO_DIR/containerd.sock"* | *containerd-shim*"-address $DEMO_DIR/containerd.sock"*"-id $ID "*) ;;
		*) continue ;;
		esac
		case "$args" in *" start " | *" delete " | *__autokill_init*) continue ;; esac
		pid=${f#/proc/}
		echo "${pid%/cmdline}"
		return 0
	done
	return 1
}

cleanup() {
	set +e
	if "$BIN/ctr" --address "$DEMO_DIR/containerd.sock" version >/dev/null 2>&1; then
		"${CTR[@]}" task kill -s KILL --all "$ID" >/dev/null 2>&1
		for _ in $(seq 50); do
			"${CTR[@]}" task ls 2>/dev/null | grep -q "^$ID .*RUNNING" || break
			sleep 0.1
		done
		"${CTR[@]}" task delete "$ID" >/dev/null 2>&1
		"${CTR[@]}" container delete "$ID" >/dev/null 2>&1
	fi
	hack/containerd.sh purge "$DEMO_DIR" >/dev/null 2>&1
	# Whatever of the demo's container outlived everything (its cgroup tells it apart).
	local p
	for p in $(container_pids); do kill -KILL "$p" 2>/dev/null; done
}

say "dependencies (containerd $VERSION, runc, busybox-static)"
if [ -x "$BIN/containerd" ] && [ -x "$BIN/ctr" ] && [ -x /usr/bin/runc ] && dpkg-query -W busybox-static >/dev/null 2>&1; then
	echo "present: $("$BIN/containerd" --version)"
else
	run hack/deps.sh "$VERSION"
fi

say "build the shim"
if [ "$RUNTIME" = io.containerd.autokill.v1 ]; then
	# make build: the same flags as every other build (the version and revision in -v).
	run make build
	[ "$AUTOKILL_SHIM" = "$REPO/bin/containerd-shim-autokill-v1" ] || run install -m 0755 bin/containerd-shim-autokill-v1 "$AUTOKILL_SHIM"
	ls -l "$AUTOKILL_SHIM"
else
	echo "runtime $RUNTIME: not needed"
fi

say "build the busybox image (OCI layout tar, no registry)"
run hack/build-image.sh "$IMAGE_TAR"

say "start a private containerd in $DEMO_DIR"
hack/containerd.sh purge "$DEMO_DIR" >/dev/null 2>&1 || true
trap cleanup EXIT
run hack/containerd.sh start "$DEMO_DIR" "$BIN"
run "${CTR[@]}" images import "$IMAGE_TAR"

say "run a container with two processes"
run "${CTR[@]}" run -d --runtime "$RUNTIME" "$IMAGE" "$ID" sh -c 'sleep 1000 & sleep 1000'
for _ in $(seq 100); do
	[ "$(container_pids | wc -l)" -ge 2 ] && break
	sleep 0.1
done
run "${CTR[@]}" task ls
run "${CTR[@]}" task ps "$ID"

say "the shim daemon and the container's processes"
SHIM_PID=$(shim_pid) || { echo "no shim daemon found for $ID" >&2; exit 1; }
PIDS=$(container_pids | tr '\n' ' ')
echo "shim daemon: pid $SHIM_PID: $(tr '\0' ' ' <"/proc/$SHIM_PID/cmdline")"
echo "container processes (cgroup /$NS/$ID): $PIDS"
# shellcheck disable=SC2086 # PIDS is a list
ps --forest -o pid,ppid,stat,args -p "$(pidlist "$SHIM_PID" $PIDS)"
echo "what the shim logged about its mode (containerd.log):"
grep -i 'mode' "$DEMO_DIR/containerd.log" | grep -vi 'migrat' | tail -n 5 | sed 's/^/  /' || echo "  (no line with \"mode\")"

say "stop containerd, so that only the kernel can act"
echo "(containerd cleans up after a dead shim: its 'shim delete' would kill a runc container too,"
echo " so with containerd running the demo could not tell the two runtimes apart)"
run hack/containerd.sh stop "$DEMO_DIR"

say "kill -9 the shim daemon (pid $SHIM_PID)"
run kill -9 "$SHIM_PID"
run sleep 1

say "what is left of the container"
LEFT=""
for p in $PIDS $(container_pids); do
	if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then LEFT="$LEFT $p"; fi
done
# shellcheck disable=SC2086 # LEFT is a list
LEFT=$(printf '%s\n' $LEFT | sort -un | tr '\n' ' ')
if [ -z "${LEFT// /}" ]; then
	echo "no process of the container is left: $PIDS are gone"
	RESULT="the container died with its shim"
else
	# shellcheck disable=SC2086 # LEFT is a list
	ps -o pid,ppid,stat,args -p "$(pidlist $LEFT)" || true
	RESULT="the container SURVIVED the shim's death (pids: ${LEFT% })"
	[ "$RUNTIME" != io.containerd.autokill.v1 ] && RESULT="$RESULT -- as expected with $RUNTIME, which has no autokill"
fi
echo "pgrep -af 'sleep 1000' (every such process on the host):"
pgrep -af 'sleep 1000' | sed 's/^/  /' || echo "  none"

say "start containerd again: what does it make of the dead shim?"
run hack/containerd.sh start "$DEMO_DIR" "$BIN"
run "${CTR[@]}" task ls || true
grep -E 'shim disconnected|cleaning up dead shim|cleanup warnings' "$DEMO_DIR/containerd.log" | tail -n 3 | cut -c1-300 | sed 's/^/  containerd.log: /' || true
echo "container processes now: $(container_pids | tr '\n' ' ')"

say "clean up"
cleanup
trap - EXIT
echo "done: $RESULT (runtime $RUNTIME, containerd $VERSION, kernel $(uname -r))"
