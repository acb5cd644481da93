#!/usr/bin/env bash
# What a Kubernetes user does with crictl, against the CRI that hack/cri/critest.sh set up (its
# crictl.yaml as $1): runp, pull, create, start, exec (sync, with a timeout that must cut a long
# command, and -it under tmux), attach, logs (the CRI log format on disk), port-forward, stats,
# update, inspect, stop, rm, stopp, rmp. Each step checks what the user would see; the first that
# does not hold fails the script. Run by hack/cri/critest.sh after critest.
#   usage: hack/cri/crictl-test.sh CRICTL_YAML
set -euo pipefail
CONF=${1:?usage: crictl-test.sh CRICTL_YAML}
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
WORK=$(mktemp -d /tmp/autokill-crictl.XXXXXX)
TMUX_SOCK=$WORK/tmux.sock
POD=
log() { printf '[crictl-test] %s\n' "$*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}
c() { crictl --config "$CONF" "$@"; }
cleanup() {
	tmux -S "$TMUX_SOCK" kill-server 2>/dev/null || true
	[ -z "${PF_PID:-}" ] || kill "$PF_PID" 2>/dev/null || true
	if [ -n "$POD" ]; then
		c stopp "$POD" >/dev/null 2>&1 || true
		c rmp "$POD" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
state() { c inspect -o go-template --template '{{.status.state}}' "$1"; }

cat >"$WORK/pod.json" <<J
{"metadata": {"name": "crictl-test", "namespace": "default", "uid": "crictl-test-$$", "attempt": 0},
 "log_directory": "$WORK/logs", "linux": {}}
J
# A web server on :8080 whose page names itself, its stdin echoed to stdout (for attach).
cat >"$WORK/web.json" <<J
{"metadata": {"name": "web"}, "image": {"image": "$IMAGE"}, "log_path": "web.log",
 "stdin": true,
 "command": ["sh", "-c", "mkdir -p /www && echo crictl-page > /www/index.html && httpd -p 8080 -h /www && echo web-up && while read -r l; do echo \"got:\$l\"; done; sleep 100000"],
 "linux": {"resources": {"memory_limit_in_bytes": 134217728}}}
J

c pull "$IMAGE" >/dev/null || fail "pull $IMAGE"
POD=$(c runp "$WORK/pod.json") || fail "runp"
log "pod $POD"
CTR=$(c create "$POD" "$WORK/web.json" "$WORK/pod.json") || fail "create"
[ "$(state "$CTR")" = CONTAINER_CREATED ] || fail "state after create: $(state "$CTR")"
c start "$CTR" >/dev/null || fail "start"
[ "$(state "$CTR")" = CONTAINER_RUNNING ] || fail "state after start: $(state "$CTR")"

# exec, synchronous: output and exit status; a timeout ends a command that runs longer.
[ "$(c exec -s "$CTR" echo hello)" = hello ] || fail "exec -s echo"
set +e
err=$(c exec -s "$CTR" sh -c 'exit 3' 2>&1 >/dev/null)
rc=$?
start=$SECONDS
c exec -s --timeout 2 "$CTR" sleep 60 >/dev/null 2>&1
trc=$?
took=$((SECONDS - start))
set -e
# crictl exits 1 for any failed exec and names the command's status in its message.
if [ "$rc" -eq 0 ] || ! grep -q 'exited with 3' <<<"$err"; then
	fail "exec -s of 'exit 3': status $rc, '$err'"
fi
if [ "$trc" -eq 0 ] || [ "$took" -ge 30 ]; then
	fail "exec -s --timeout 2 sleep 60: status $trc after ${took}s"
fi
log "exec -s: output, exit status 3, --timeout 2 ended sleep 60 after ${took}s"

# exec -it: a shell on a terminal, driven through tmux as a user types.
tmux -S "$TMUX_SOCK" new-session -d -x 120 -y 20 "crictl --config $CONF exec -it $CTR sh"
for _ in $(seq 50); do
	tmux -S "$TMUX_SOCK" capture-pane -p | grep -q '[#$] *$' && break
	sleep 0.2
done
# shellcheck disable=SC2016 # expanded by the container's shell, not this one
tmux -S "$TMUX_SOCK" send-keys 'tty; echo "tty-$((6*7))"' Enter
for _ in $(seq 50); do
	out=$(tmux -S "$TMUX_SOCK" capture-pane -p)
	grep -q '^tty-42' <<<"$out" && break
	sleep 0.2
done
if ! grep -q '^/dev/pts/' <<<"$out" || ! grep -q '^tty-42' <<<"$out"; then
	fail "exec -it under tmux showed:
$out"
fi
tmux -S "$TMUX_SOCK" send-keys 'exit' Enter
log "exec -it: a shell on /dev/pts"

# attach: what is typed reaches the container's stdin, its answer comes back.
out=$( (echo attach-line; sleep 2) | timeout 10 crictl --config "$CONF" attach -i "$CTR" 2>/dev/null || true)
grep -q '^got:attach-line' <<<"$out" || fail "attach -i: got '$out'"
log "attach: stdin in, stdout out"

# logs: crictl's view and the CRI log file (RFC 3339 time, stream, tag, line).
logs=$(c logs "$CTR" 2>&1) || fail "crictl logs: $logs"
grep -q '^web-up$' <<<"$logs" || fail "crictl logs lacks web-up: $logs"
line=$(grep ' web-up$' "$WORK/logs/web.log" | head -n 1)
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) stdout F web-up$' <<<"$line" ||
	fail "CRI log line: '$line'"
log "logs: $line"

# port-forward into the pod's network namespace.
c port-forward "$POD" 18080:8080 >"$WORK/pf.log" 2>&1 &
PF_PID=$!
page=
for _ in $(seq 50); do
	page=$(curl -fsS --max-time 2 http://127.0.0.1:18080/ 2>/dev/null) && break
	sleep 0.2
done
[ "$page" = crictl-page ] || fail "port-forward 18080:8080 gave '$page': $(cat "$WORK/pf.log")"
kill "$PF_PID"
PF_PID=
log "port-forward: the pod's httpd answered"

# stats, update (the new limit in the container's cgroup), inspect.
stats=$(c stats -o json --id "$CTR") || fail "stats"
ws=$(jq -r '.stats[0].memory.workingSetBytes.value // 0' <<<"$stats")
[ "${ws:-0}" -gt 0 ] || fail "stats: no working set"
c update --memory 67108864 "$CTR" >/dev/null || fail "update --memory"
lim=$(c exec -s "$CTR" sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes')
[ "$lim" = 67108864 ] || fail "memory limit after update: $lim"
got=$(c inspect "$CTR" | jq -r '.status.resources.linux.memoryLimitInBytes // empty')
[ "$got" = 67108864 ] || fail "inspect: memoryLimitInBytes '$got' after the update"
log "stats: working set $ws; update: limit 64 MiB in the cgroup and in inspect"

# stop, rm, stopp, rmp.
c stop --timeout 5 "$CTR" >/dev/null || fail "stop"
[ "$(state "$CTR")" = CONTAINER_EXITED ] || fail "state after stop: $(state "$CTR")"
c rm "$CTR" >/dev/null || fail "rm"
c stopp "$POD" >/dev/null || fail "stopp"
c rmp "$POD" >/dev/null || fail "rmp"
[ -z "$(c pods -q --id "$POD")" ] || fail "pod still listed after rmp"
POD=
log "ok: runp, create, start, exec, exec -it, attach, logs, port-forward, stats, update, inspect, stop, rm, stopp, rmp"
