#!/usr/bin/env bash
# critest (cri-tools v1.37.0) against the CRI of a private containerd, offline, with ONE runtime
# handler that is also the default one:
#   AUTOKILL_CRI_RUNTIME=io.containerd.autokill.v1 (default: bin/containerd-shim-autokill-v1, or
#     $AUTOKILL_SHIM)   or   io.containerd.runc.v2 (containerd's runc shim: the reference)
#   AUTOKILL_CRI_CONTAINERD=2.4 (default; a version or bin dir as in hack/lib.sh; 1.6 and 1.7 get the
#     config version 2 files)
#   AUTOKILL_CRI_ARGS="..."  more critest/ginkgo flags, e.g. -ginkgo.focus=Streaming (unquoted words)
#   AUTOKILL_CRI_REPORT=DIR  where junit.xml, report.json, critest.log and containerd.log go
#     (default /tmp/autokill-cri-report)
#   AUTOKILL_CRI_TIMEOUT=30m the whole suite's bound (ginkgo -timeout; a hard kill 2 min later)
#   AUTOKILL_CRI_SYSTEMD=1   the systemd cgroup driver (hack/cri/runtime-systemd.toml; containerd 2.x,
#     systemd as the host's init: the VM's AUTOKILL_VM_INIT=systemd)
# Sets up (each step cached: hack/cri/tools.sh, hack/cri/images.sh): the tools, the images in a
# local registry on 127.0.0.1 served under their upstream names (certs.d/<host>/hosts.toml), CNI
# (bridge + host-local + portmap, loopback), containerd with hack/cri/cri.toml + runtime.toml.
# Runs critest, prints the counts and the failed specs, and tears everything down (pods through
# CRI so that CNI releases what it set up, then containerd, shims, mounts, registry, bridge) on
# success, failure or interrupt. Exit status: critest's.
#   hack/cri/critest.sh env    prints the PATH entry holding crictl and critest (for other tests)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=hack/lib.sh
. "$REPO/hack/lib.sh"

log() { printf '[critest] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "${1:-}" = env ]; then
	echo "$AK_CRI_CACHE/bin"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root"

RUNTIME=${AUTOKILL_CRI_RUNTIME:-io.containerd.autokill.v1}
SYSTEMD=${AUTOKILL_CRI_SYSTEMD:-0}
CONTAINERD=${AUTOKILL_CRI_CONTAINERD:-2.4}
REPORT=${AUTOKILL_CRI_REPORT:-/tmp/autokill-cri-report}
TIMEOUT=${AUTOKILL_CRI_TIMEOUT:-30m}
BRIDGE=akcri0
SUBNET=10.233.0.0/24
case $RUNTIME in
io.containerd.autokill.v1) HANDLER=autokill ;;
io.containerd.runc.v2) HANDLER=runc ;;
*) die "AUTOKILL_CRI_RUNTIME=$RUNTIME: want io.containerd.autokill.v1 or io.containerd.runc.v2" ;;
esac
if [ "$RUNTIME" = io.containerd.autokill.v1 ]; then
	export AUTOKILL_SHIM=${AUTOKILL_SHIM:-$REPO/bin/containerd-shim-autokill-v1}
	[ -x "$AUTOKILL_SHIM" ] || die "no shim at $AUTOKILL_SHIM (make build)"
fi
BD=$(ak_bin_dir "$CONTAINERD")
MAJOR=$("$BD/containerd" --version | awk '{print $3}' | sed 's/^v//' | cut -d. -f1)
if [ "$SYSTEMD" = 1 ]; then
	[ "$MAJOR" -ge 2 ] || die "AUTOKILL_CRI_SYSTEMD=1: runtime-systemd.toml is containerd 2.x's config"
	[ -d /run/systemd/system ] || die "AUTOKILL_CRI_SYSTEMD=1: systemd is not this host's init"
fi
command -v iptables >/dev/null || die "iptables not found (CNI portmap needs it: hack/deps.sh)"

t0=$SECONDS
"$HERE/tools.sh"
STORE=$("$HERE/images.sh" | tail -n 1)
"$HERE/tools.sh" "$(cat "$STORE/digest")"
BIN=$AK_CRI_CACHE/bin
export PATH=$BIN:$PATH
log "setup (tools, images) took $((SECONDS - t0)) s"

DIR=$(mktemp -d /tmp/autokill-cri.XXXXXX)
# mktemp's 0700 would stop a user-namespaced container's root (a host uid that is not 0) on its
# way to its bundle's rootfs below DIR/state (EACCES), where /run/containerd's 0711 lets it pass.
chmod 0711 "$DIR"
REG_PID=
CRITEST_PID=
HOSTPORT_CHAINS=theirs
# shellcheck disable=SC2317 # run by the EXIT trap
teardown() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	[ -z "$CRITEST_PID" ] || { kill -TERM "$CRITEST_PID" 2>/dev/null; sleep 2; kill -KILL "$CRITEST_PID" 2>/dev/null; }
	if "$BD/ctr" --address "$DIR/containerd.sock" version >/dev/null 2>&1; then
		# Through CRI first: CNI DEL releases the addresses and the portmap rules.
		timeout 120 crictl --timeout 60s -r "unix://$DIR/containerd.sock" rmp -af >/dev/null 2>&1 ||
			log "crictl rmp -af failed: pods may remain until containerd's purge"
	fi
	mkdir -p "$REPORT"
	cp "$DIR/containerd.log" "$REPORT/containerd.log" 2>/dev/null
	"$REPO/hack/containerd.sh" purge "$DIR" 2>&1 | grep -v '^\[containerd\] killing shim' >&2
	[ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null
	ip link del "$BRIDGE" 2>/dev/null
	[ "$HOSTPORT_CHAINS" = ours ] && portmap_cleanup
	rm -rf "$DIR"
	log "torn down (report in $REPORT)"
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# portmap's shared nat chains: made by the first pod with a host port, left behind by the plugin.
# Removed at teardown if this run made them and no pod's chain (CNI-DN-*) hangs from them.
# shellcheck disable=SC2317 # run by teardown
portmap_cleanup() {
	iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -q -- '-j CNI-DN-' && return 0
	iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
	iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
	iptables -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
	local c
	for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
		iptables -t nat -F "$c" && iptables -t nat -X "$c"
	done
} 2>/dev/null
HOSTPORT_CHAINS=ours
iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 && HOSTPORT_CHAINS=theirs

# --- registry: the cached storage, served on a free port ---------------------------------
PORT=$(ak_free_port) || die "no free port"
cat >"$DIR/registry.yml" <<Y
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STORE/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$PORT
Y
OTEL_TRACES_EXPORTER=none "$BIN/registry-$AK_REGISTRY_VERSION" serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null || { cat "$DIR/registry.log" >&2; die "registry did not start"; }
for h in registry.k8s.io k8s.gcr.io gcr.io; do
	mkdir -p "$DIR/certs.d/$h"
	# containerd 1.6 wants the host table; `server` alone is not enough there.
	cat >"$DIR/certs.d/$h/hosts.toml" <<T
server = "http://127.0.0.1:$PORT"

[host."http://127.0.0.1:$PORT"]
  capabilities = ["pull", "resolve"]
T
done

# --- CNI ---------------------------------------------------------------------------------------
ip link del "$BRIDGE" 2>/dev/null || true # a run killed before its teardown
mkdir -p "$DIR/cni/net.d"
cat >"$DIR/cni/net.d/10-autokill-cri.conflist" <<J
{
  "cniVersion": "1.0.0",
  "name": "autokill-cri",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
J

# --- containerd --------------------------------------------------------------------------------
if [ "$MAJOR" -ge 2 ]; then cri=cri.toml rt=runtime.toml; else cri=cri-v2.toml rt=runtime-v2.toml; fi
{
	sed -e "s|@CNI_BIN@|$BIN/cni-$AK_CNI_VERSION|g" "$HERE/$cri"
	printf '\n'
	runtime_files=("$HERE/$rt")
	if [ "$SYSTEMD" = 1 ]; then
		printf '\n'
		runtime_files+=("$HERE/runtime-systemd.toml")
	fi
	if [ "$HANDLER" = autokill ]; then
		cat "${runtime_files[@]}"
	else
		sed -e 's/"autokill"/"runc"/; s/runtimes\.autokill\]/runtimes.runc]/; s/runtimes\.autokill\.options\]/runtimes.runc.options]/; s/io\.containerd\.autokill\.v1/io.containerd.runc.v2/' "${runtime_files[@]}"
	fi
} >"$DIR/cri-extra.toml"
AUTOKILL_CONTAINERD_CRI=$DIR/cri-extra.toml "$REPO/hack/containerd.sh" start "$DIR" "$BD"
cat >"$DIR/crictl.yaml" <<C
runtime-endpoint: unix://$DIR/containerd.sock
image-endpoint: unix://$DIR/containerd.sock
timeout: 60
C
crictl --config "$DIR/crictl.yaml" info >/dev/null || die "CRI does not answer (containerd.log: $DIR/containerd.log)"

# --- critest -------------------------------------------------------------------------------------
mkdir -p "$REPORT"
find "$REPORT" -mindepth 1 -delete # its contents only: the VM tier shares it read-write (a mount point)
nri=()
[ "$MAJOR" -lt 2 ] || nri=(-nri-socket "$DIR/nri.sock")
read -ra extra <<<"${AUTOKILL_CRI_ARGS:-}"
# critest loads its AppArmor test profiles with `sudo apparmor_parser ...`; we are root already, and
# a host without sudo (the VM) gets a stand-in that runs the command as is.
if ! command -v sudo >/dev/null; then
	mkdir -p "$DIR/bin"
	printf '#!/bin/sh\n# critest runs "sudo apparmor_parser ..." as root: run it as is.\nexec "$@"\n' >"$DIR/bin/sudo"
	chmod 0755 "$DIR/bin/sudo"
	export PATH=$DIR/bin:$PATH
fi
log "critest with $RUNTIME (handler $HANDLER, the default) on $("$BD/containerd" --version | awk '{print $3}')"
t1=$SECONDS
set +e
# -runtime-service-timeout bounds every CRI call (a hung StopPodSandbox fails its spec after 60 s
# instead of eating the suite's time); -ginkgo.timeout bounds the whole suite.
timeout -k 10 "$(( $(ak_seconds "$TIMEOUT") + 120 ))" "$BIN/critest" \
	-runtime-endpoint "unix://$DIR/containerd.sock" -image-endpoint "unix://$DIR/containerd.sock" \
	-runtime-service-timeout 60s -image-service-timeout 120s "${nri[@]}" \
	-ginkgo.timeout "$TIMEOUT" -ginkgo.poll-progress-after 90s -ginkgo.no-color \
	-ginkgo.junit-report "$REPORT/junit.xml" -ginkgo.json-report "$REPORT/report.json" \
	"${extra[@]}" >"$REPORT/critest.log" 2>&1 &
CRITEST_PID=$!
wait "$CRITEST_PID"
rc=$?
CRITEST_PID=
set -e
log "critest took $((SECONDS - t1)) s, exit $rc; log $REPORT/critest.log"
grep -E '^Ran [0-9]+ of [0-9]+ Specs|^(SUCCESS|FAIL)! ' "$REPORT/critest.log" >&2 || tail -n 20 "$REPORT/critest.log" >&2
fails=$(sed -n '/^Summarizing [0-9]* Failure/,$p' "$REPORT/critest.log" | grep -E '^ *\[(FAIL|TIMEDOUT|PANICKED|INTERRUPTED)\]' || true)
[ -z "$fails" ] || { log "failed specs:"; printf '%s\n' "$fails" >&2; }
# What a user does with crictl, on the same CRI (AUTOKILL_CRI_CRICTL=0 skips it).
if [ "${AUTOKILL_CRI_CRICTL:-1}" = 1 ]; then
	t1=$SECONDS
	if "$HERE/crictl-test.sh" "$DIR/crictl.yaml"; then
		log "crictl test passed in $((SECONDS - t1)) s"
	else
		log "crictl test FAILED after $((SECONDS - t1)) s"
		[ "$rc" -ne 0 ] || rc=1
	fi
fi
exit "$rc"
