#!/usr/bin/env bash
# Runs one command inside a Linux >= 7.1 VM (qemu, TCG) that sees the host's filesystem.
#   usage: hack/vm/run.sh [--timeout SECS] [--rw DIR]... [--] CMD [ARGS...]
#          go test -exec "$PWD/hack/vm/run.sh" ./pkg      (CMD = the test binary, no --)
# The command runs as root in the caller's working directory, with stdin /dev/null, its stdout and
# stderr streamed to ours, and its exit status becomes ours. The guest sees the host's / through
# virtiofs under a tmpfs overlay: it reads everything and writes nothing back, except below the
# directories given with --rw. /tmp, /run and /var/lib/containerd are fresh tmpfs (a cwd or CMD
# below them stays visible). Passed through: AUTOKILL_*, GOFLAGS, GOTRACEBACK, GODEBUG, PATH, and
# the names listed in AUTOKILL_VM_ENV.
# Exit status: CMD's; 124 on timeout; 125 when the VM could not run it (boot failed 3 times, crash).
# Settings: AUTOKILL_VM_TIMEOUT (900 s, or --timeout; includes boot), AUTOKILL_VM_BOOT_TIMEOUT
# (60 s until "started"), AUTOKILL_VM_MEM (3G), AUTOKILL_VM_MACHINE (microvm|pc),
# AUTOKILL_VM_KEEP=1 (keep the run directory with the console log), AUTOKILL_VM_QUIET=1 (no banner),
# AUTOKILL_VM_APPEND (more kernel parameters), AUTOKILL_VM_INIT=systemd (pid 1 is Debian's systemd
# with the D-Bus system bus, the command one service of it: see init; ≈1 s more boot).
# Needs root (virtiofsd) and hack/vm/fetch.sh's cache, which it runs itself (fast when cached).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}
VMC=$CACHE/vm
TIMEOUT=${AUTOKILL_VM_TIMEOUT:-900}
BOOT_TIMEOUT=${AUTOKILL_VM_BOOT_TIMEOUT:-60}
MEM=${AUTOKILL_VM_MEM:-3G}
MACHINE=${AUTOKILL_VM_MACHINE:-microvm}
TRIES=3
RW=()

log() { printf '[vm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 125; }
usage() { sed -n '2,18p' "$0" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--timeout) TIMEOUT=${2:?}; shift 2 ;;
	--timeout=*) TIMEOUT=${1#*=}; shift ;;
	--rw) RW+=("$(realpath -m "${2:?}")"); shift 2 ;;
	--rw=*) RW+=("$(realpath -m "${1#*=}")"); shift ;;
	--) shift; break ;;
	-h | --help) usage ;;
	-*) log "unknown option $1"; usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got $TIMEOUT"
case $MACHINE in microvm | pc) ;; *) die "AUTOKILL_VM_MACHINE must be microvm or pc" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (virtiofsd)"

"$HERE/fetch.sh" --quiet || die "hack/vm/fetch.sh failed"
# shellcheck disable=SC1091
. "$VMC/kernel.env"

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
T0=$(now_ms)
DEADLINE=$((T0 + TIMEOUT * 1000))
secs() { local ms=$1; printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }

# The guest's TSC runs at the host's rate under TCG; telling the kernel avoids its calibration,
# which hangs now and then on a busy host with -M microvm.
tsc_khz() {
	local boot f mhz
	boot=$(cat /proc/sys/kernel/random/boot_id)
	f=$VMC/tsc_khz.$boot
	if [ ! -s "$f" ]; then
		mhz=$(dmesg 2>/dev/null | sed -n -e 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' \
			-e 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -1)
		[ -n "$mhz" ] || mhz=$(awk -F': *' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
		rm -f "$VMC"/tsc_khz.*
		awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 }' >"$f"
	fi
	cat "$f"
}

# --- the request: environment, cwd, command --------------------------------------------------
quote() { local s=$1; printf "'%s'" "${s//\'/\'\\\'\'}"; }
CWD=$(pwd -P)
# What the fresh tmpfs mounts would hide but the command needs (go test -exec runs
# /tmp/go-build*/b001/pkg.test): the cwd and the command's directory when strictly below one of
# them, the command itself when it sits right in one. The guest binds them back (overlay view).
below_tmpfs() { case $1 in /tmp/?* | /run/?* | /var/lib/containerd/?*) return 0 ;; esac; return 1; }
inside() { case $1/ in "$2"/*) return 0 ;; esac; return 1; } # PATH is PARENT or below it
KEEP=""
below_tmpfs "$CWD" && KEEP=$CWD
if [[ $1 == */* ]]; then
	cmd_abs=$(realpath -m "$1")
	cmd_dir=$(dirname "$cmd_abs")
	[ -e "$cmd_abs" ] || die "$1: no such file"
	if below_tmpfs "$cmd_dir"; then
		if [ -z "$KEEP" ] || inside "$cmd_dir" "$KEEP"; then
			KEEP=${KEEP:-$cmd_dir}
		elif inside "$KEEP" "$cmd_dir"; then
			KEEP=$cmd_dir
		else
			KEEP=$KEEP$'\n'$cmd_dir
		fi
	elif below_tmpfs "$cmd_abs"; then
		KEEP=${KEEP:+$KEEP$'\n'}$cmd_abs
	fi
fi
# The repository itself when it lies below a tmpfs path (a clone in /tmp): tests run from a
# package directory read their siblings' testdata (../spec/testdata).
REPO=$(cd "$(dirname "$0")/../.." && pwd -P)
if below_tmpfs "$REPO"; then
	kept=$REPO
	while IFS= read -r k; do
		[ -n "$k" ] && ! inside "$k" "$REPO" && kept+=$'\n'$k
	done <<<"$KEEP"
	KEEP=$kept
fi
# The cache (the built containerd versions, the image) when AUTOKILL_CACHE points below a tmpfs path.
if [ -n "${AUTOKILL_CACHE:-}" ]; then
	cache_abs=$(realpath -m "$AUTOKILL_CACHE")
	if below_tmpfs "$cache_abs" && [ -d "$cache_abs" ]; then
		covered=""
		while IFS= read -r k; do
			[ -n "$k" ] && inside "$cache_abs" "$k" && covered=1
		done <<<"$KEEP"
		[ -n "$covered" ] || KEEP=${KEEP:+$KEEP$'\n'}$cache_abs
	fi
fi
for d in "${RW[@]}"; do mkdir -p "$d"; done
RUN=$(mktemp -d "${TMPDIR:-/tmp}/autokill-vm.XXXXXX")
RUN=$(realpath "$RUN")
trap 'rm -rf "$RUN"' EXIT
{
	echo "VM_RUN=$(quote "$RUN")"
	echo "VM_CWD=$(quote "$CWD")"
	echo "VM_KVER=$(quote "$KVER")"
	echo "VM_MODDIR=$(quote "$MODDIR")"
	echo "VM_KEEP=$(quote "$KEEP")"
	echo "VM_RW=$(quote "$(printf '%s\n' "${RW[@]}")")"
	echo "export PATH=$(quote "${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")"
	# shellcheck disable=SC2086
	for name in $(compgen -e); do
		case " ${AUTOKILL_VM_ENV:-} " in *" $name "*) ;; *)
			case $name in AUTOKILL_* | GOFLAGS | GOTRACEBACK | GODEBUG) ;; *) continue ;; esac ;;
		esac
		echo "export $name=$(quote "${!name}")"
	done
	printf 'set --'
	for a in "$@"; do printf ' %s' "$(quote "$a")"; done
	echo
} >"$RUN/env"

# --- one boot --------------------------------------------------------------------------------
QPID="" VPID="" OPID="" EPID=""
stop_vm() {
	local p i f
	for p in $QPID $VPID; do kill -9 "$p" 2>/dev/null || true; done
	for p in $QPID $VPID; do wait "$p" 2>/dev/null || true; done
	# The writers are gone: the readers drain the fifos and see EOF. One that qemu never opened
	# still blocks in open(2): opening the fifo read-write (never blocks) and closing releases it.
	for f in "$RUN/stdout" "$RUN/stderr"; do
		[ -p "$f" ] && { (exec 6<>"$f") 2>/dev/null || true; }
	done
	for p in $OPID $EPID; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
			nap 0.1
			i=$((i + 1))
		done
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	QPID="" VPID="" OPID="" EPID=""
}
KEEP_RUN=${AUTOKILL_VM_KEEP:-0}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	stop_vm
	if [ "$KEEP_RUN" = 1 ]; then
		log "run directory kept: $RUN (console.log, qemu.log, virtiofsd.log)"
	else
		rm -rf "$RUN"
	fi
}
trap cleanup EXIT
trap 'log "interrupted"; KEEP_RUN=1; exit 130' INT
trap 'log "terminated"; KEEP_RUN=1; exit 143' TERM HUP QUIT

# A fd to sleep on without forking: read -t on a fifo nobody writes.
mkfifo "$RUN/tick"
exec 7<>"$RUN/tick"
nap() { read -r -t "$1" -u 7 _ || true; }

CMDLINE="console=ttyS0 reboot=t panic=-1 oops=panic mitigations=off"
CMDLINE+=" tsc_early_khz=$(tsc_khz) tsc=reliable no_timer_check"
CMDLINE+=" autokill.run=$RUN autokill.time=$(date +%s)${AUTOKILL_VM_APPEND:+ $AUTOKILL_VM_APPEND}"
if [ "$MACHINE" = microvm ]; then
	CMDLINE+=" pci=off"
	# virtio-mmio defaults to the legacy interface, which vhost-user (virtiofsd) refuses.
	# shellcheck disable=SC2054 # qemu's own comma-separated option lists
	QEMU_MACHINE=(-M microvm,accel=tcg,memory-backend=mem,x-option-roms=off -global virtio-mmio.force-legacy=false)
	DEV_SUFFIX=device
else
	# shellcheck disable=SC2054 # qemu's own comma-separated option lists
	QEMU_MACHINE=(-M pc,accel=tcg,memory-backend=mem)
	DEV_SUFFIX=pci
fi

# boot ATTEMPT: sets STATUS to one of exit:N, boot-error:MSG, fatal:MSG, crash, timeout
boot() {
	local attempt=$1 started=0 t_start ctl="" line boot_ms
	rm -f "$RUN/vfs.sock" "$RUN/ctl" "$RUN/rc" "$RUN/stdout" "$RUN/stderr"
	mkfifo "$RUN/stdout" "$RUN/stderr"
	cat "$RUN/stdout" &
	OPID=$!
	cat "$RUN/stderr" >&2 &
	EPID=$!

	setpriv --pdeathsig KILL /usr/lib/qemu/virtiofsd --socket-path="$RUN/vfs.sock" -o source=/ \
		-o sandbox=chroot -o cache=always -o log_level=warn </dev/null >"$RUN/virtiofsd.log" 2>&1 &
	VPID=$!
	local i=0
	until [ -S "$RUN/vfs.sock" ]; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$VPID" 2>/dev/null; then
			STATUS="boot-error:virtiofsd did not start (see $RUN/virtiofsd.log)"
			return
		fi
		nap 0.05
	done

	t_start=$(now_ms)
	setpriv --pdeathsig KILL qemu-system-x86_64 "${QEMU_MACHINE[@]}" \
		-cpu max,-erms,-fsrm,-la57 -smp 1 -m "$MEM" \
		-object "memory-backend-memfd,id=mem,size=$MEM,share=on" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
		-chardev "file,id=con,path=$RUN/console.log" -serial chardev:con \
		-chardev "socket,id=vfs,path=$RUN/vfs.sock" \
		-device "vhost-user-fs-$DEV_SUFFIX,chardev=vfs,tag=host,queue-size=1024" \
		-device "virtio-serial-$DEV_SUFFIX,max_ports=4" \
		-chardev "file,id=out,path=$RUN/stdout" -device virtserialport,chardev=out,name=stdout \
		-chardev "file,id=err,path=$RUN/stderr" -device virtserialport,chardev=err,name=stderr \
		-chardev "file,id=ctl,path=$RUN/ctl" -device virtserialport,chardev=ctl,name=ctl \
		</dev/null >"$RUN/qemu.log" 2>&1 &
	QPID=$!

	local exit_seen_ms=0
	while kill -0 "$QPID" 2>/dev/null; do
		ctl=""
		[ -f "$RUN/ctl" ] && { read -r -d '' ctl <"$RUN/ctl" || true; }
		if [ $started = 0 ] && [[ $ctl == *started* ]]; then
			started=1
			boot_ms=$(($(now_ms) - t_start))
			line=${ctl#*started }
			line=${line%%$'\n'*}
			if [ "${AUTOKILL_VM_QUIET:-0}" != 1 ]; then
				log "== vm tier: kernel ${line%% *}, qemu tcg $MACHINE 1 vCPU $MEM, boot $(secs "$boot_ms") s (guest uptime ${line#* } s), attempt $attempt/$TRIES, timeout ${TIMEOUT}s =="
			fi
		fi
		if [[ $ctl == *$'\nexit '* || $ctl == 'exit '* ]]; then
			# The guest powers off right after; do not wait forever for it.
			[ "$exit_seen_ms" != 0 ] || exit_seen_ms=$(now_ms)
			[ $(($(now_ms) - exit_seen_ms)) -lt 15000 ] || break
		fi
		[[ $ctl == *fatal* || $ctl == *boot-error* ]] && { nap 2; break; }
		if [ $started = 0 ] && [ $(($(now_ms) - t_start)) -gt $((BOOT_TIMEOUT * 1000)) ]; then
			STATUS="boot-error:no started marker after ${BOOT_TIMEOUT}s"
			stop_vm
			return
		fi
		if [ "$(now_ms)" -gt "$DEADLINE" ]; then
			STATUS=timeout
			stop_vm
			return
		fi
		if [ $started = 0 ]; then nap 0.1; else nap 0.5; fi
	done
	local qrc=0
	kill -0 "$QPID" 2>/dev/null && kill -9 "$QPID" 2>/dev/null
	wait "$QPID" || qrc=$?
	QPID=""
	stop_vm # virtiofsd, then drain the output readers
	ctl=""
	[ -f "$RUN/ctl" ] && { read -r -d '' ctl <"$RUN/ctl" || true; }
	if [[ $ctl =~ (^|$'\n')exit\ ([0-9]+) ]]; then
		STATUS=exit:${BASH_REMATCH[2]}
	elif [ -s "$RUN/rc" ]; then
		STATUS=exit:$(cat "$RUN/rc")
	elif [[ $ctl =~ (^|$'\n')fatal\ ([^$'\n']*) ]]; then
		STATUS=fatal:${BASH_REMATCH[2]}
	elif [[ $ctl =~ (^|$'\n')boot-error\ ([^$'\n']*) ]]; then
		STATUS=boot-error:${BASH_REMATCH[2]}
	elif [ $started = 1 ]; then
		STATUS=crash
	else
		STATUS="boot-error:qemu exited ($qrc) before the command started"
	fi
}

STATUS=""
for attempt in $(seq 1 $TRIES); do
	boot "$attempt"
	stop_vm
	case $STATUS in
	boot-error:*)
		log "VM attempt $attempt/$TRIES failed to boot: ${STATUS#boot-error:}"
		for f in console.log qemu.log; do
			[ -s "$RUN/$f" ] && cp "$RUN/$f" "$RUN/$f.attempt$attempt"
		done
		log "console log: $RUN/console.log.attempt$attempt"
		KEEP_RUN=1
		;;
	*) break ;;
	esac
done

elapsed=$(secs $(($(now_ms) - T0)))
case $STATUS in
exit:*)
	rc=${STATUS#exit:}
	[ "${AUTOKILL_VM_QUIET:-0}" = 1 ] || log "== vm tier: exit status $rc after $elapsed s =="
	exit "$rc"
	;;
timeout)
	KEEP_RUN=1
	log "ERROR: timeout after ${TIMEOUT}s; console log: $RUN/console.log"
	exit 124
	;;
fatal:*)
	KEEP_RUN=1
	log "ERROR: ${STATUS#fatal:}; console log: $RUN/console.log"
	exit 125
	;;
crash)
	KEEP_RUN=1
	log "ERROR: the VM died while the command ran (kernel panic?); console log: $RUN/console.log"
	tail -n 30 "$RUN/console.log" >&2 || true
	exit 125
	;;
*)
	KEEP_RUN=1
	log "ERROR: the VM did not boot in $TRIES attempts; console log: $RUN/console.log"
	tail -n 30 "$RUN/console.log" >&2 || true
	exit 125
	;;
esac
