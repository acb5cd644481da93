#!/usr/bin/env bash
# VM tier of the integration tests: bin/integration.test inside a Linux >= 7.1 VM (native
# CLONE_PIDFD_AUTOKILL), once per containerd version, one VM boot each (a fresh kernel, cgroup tree
# and tmpfs state per version). Every version runs even if an earlier one fails; the exit status is
# non-zero if any failed.
#   AUTOKILL_VERSIONS      containerd versions (1.6, 2.4.2, ...) or bin dirs (default: hack/lib.sh's
#                          AK_VM_VERSIONS, 1.6 2.4)
#   AUTOKILL_RUNTIME       runtime under test (default io.containerd.autokill.v1)
#   AUTOKILL_TEST_ARGS     extra flags for the test binary (e.g. "-test.run TestCtr")
#   AUTOKILL_VM_TIMEOUT    seconds per VM run, boot included (default 1200: the suite took 506 s
#                          and 550+ s on 1.6 and 2.4 under TCG in 2026-12); the test binary gets
#                          -test.timeout 60 s shorter, so a hang ends in a goroutine dump
#   AUTOKILL_VM_SUITES     which suites to run (default "integration setup units systemd"): setup is
#                          the internal/setup root tests (the setup face in real namespaces: mount
#                          safety and the mount-class CVE regressions), units the unit tests of the
#                          kernel-dependent packages (UNIT_PKGS below; "pidfd" is an old name for
#                          it), systemd the systemd cgroup driver's tests in a VM booted with
#                          systemd as pid 1 (AUTOKILL_VM_INIT=systemd; the last version only,
#                          ≈40 s); they run only without AUTOKILL_TEST_ARGS, or (setup, systemd) with
#   AUTOKILL_SETUP_TEST_ARGS  flags for the setup test binary (e.g. "-test.run TestCVE")
#   AUTOKILL_SYSTEMD_TEST_ARGS  flags for the systemd run (default: its tests, SYSTEMD_TESTS below)
# Run as root from anywhere, after `make deps` and `make build`. bin/integration.test is built here
# (go test -c, as the host tier does). Needs: hack/vm/fetch.sh's kernel (fetched on demand).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

VM_TIMEOUT=${AUTOKILL_VM_TIMEOUT:-1200}
TEST_TIMEOUT=$((VM_TIMEOUT > 120 ? VM_TIMEOUT - 60 : VM_TIMEOUT / 2))

log() { printf '[vm-tests] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

export AUTOKILL_TIER=vm
export AUTOKILL_IMAGE_TAR=${AUTOKILL_IMAGE_TAR:-$AUTOKILL_CACHE/images/busybox.tar}
export AUTOKILL_RUNTIME=${AUTOKILL_RUNTIME:-io.containerd.autokill.v1}
if [ "$AUTOKILL_RUNTIME" = io.containerd.autokill.v1 ] || [ -x "$PWD/bin/containerd-shim-autokill-v1" ]; then
	export AUTOKILL_SHIM=${AUTOKILL_SHIM:-$PWD/bin/containerd-shim-autokill-v1}
	[ -x "$AUTOKILL_SHIM" ] || die "$AUTOKILL_SHIM missing: run 'make build'"
fi
[ -s "$AUTOKILL_IMAGE_TAR" ] || die "$AUTOKILL_IMAGE_TAR missing: run 'make image' (or 'make deps')"
[ -d integration ] || die "integration/ missing: nothing to test"
command -v go >/dev/null || die "go not found: cannot build bin/integration.test"
go test -c -o bin/integration.test ./integration || die "building bin/integration.test failed"

read -ra VERSIONS <<<"${AUTOKILL_VERSIONS:-$AK_VM_VERSIONS}"
for v in "${VERSIONS[@]}"; do
	bd=$(ak_bin_dir "$v") || exit 2
	for b in containerd ctr; do
		[ -x "$bd/$b" ] || die "$bd/$b missing (containerd $v): run 'make deps'"
	done
done

hack/vm/fetch.sh

SUITES=" ${AUTOKILL_VM_SUITES:-integration setup units systemd} "
# What the systemd run takes: the tests that need systemd as pid 1 (elsewhere they skip).
SYSTEMD_TESTS='^(TestAPISystemd|TestSystemd)'
LAST_VERSION=${VERSIONS[${#VERSIONS[@]}-1]}
rc=0
summary=()
failures=()
tierlog=$(mktemp)
trap 'rm -f "$tierlog"' EXIT
[[ $SUITES == *" integration "* ]] || VERSIONS=()
for v in "${VERSIONS[@]}"; do
	bd=$(ak_bin_dir "$v")
	ver=$("$bd/containerd" --version 2>/dev/null | awk '{print $3}') || ver=$v
	echo
	echo "== vm tier: containerd $ver (runtime $AUTOKILL_RUNTIME), timeout ${VM_TIMEOUT}s =="
	t0=$SECONDS
	set +e
	# shellcheck disable=SC2086
	AUTOKILL_CONTAINERD_BIN_DIR=$bd hack/vm/run.sh --timeout "$VM_TIMEOUT" -- \
		bin/integration.test -test.v -test.count=1 -test.timeout="${TEST_TIMEOUT}s" ${AUTOKILL_TEST_ARGS:-} 2>&1 | tee "$tierlog"
	st=${PIPESTATUS[0]}
	set -e
	case $st in
	0) res=PASS ;;
	124) res="FAIL (VM timeout)" ;;
	125) res="FAIL (the VM could not run the tests)" ;;
	*) res="FAIL (exit status $st)" ;;
	esac
	if [ "$st" != 0 ]; then
		rc=1
		while IFS= read -r l; do failures+=("containerd $ver: $l"); done < <(ak_failures "$tierlog")
	fi
	summary+=("containerd $ver: $res in $((SECONDS - t0)) s")
	echo "== vm tier: containerd $ver: $res =="
done

# The systemd cgroup driver: the same test binary in a VM whose pid 1 is Debian's systemd (with
# the D-Bus system bus), against the last version only: what differs is systemd, not containerd.
if [[ $SUITES == *" systemd "* ]] && { [ -z "${AUTOKILL_TEST_ARGS:-}" ] || [ -n "${AUTOKILL_SYSTEMD_TEST_ARGS:-}" ]; }; then
	bd=$(ak_bin_dir "$LAST_VERSION")
	ver=$("$bd/containerd" --version 2>/dev/null | awk '{print $3}') || ver=$LAST_VERSION
	echo
	echo "== vm tier: systemd as pid 1, containerd $ver (runtime $AUTOKILL_RUNTIME) =="
	t0=$SECONDS
	set +e
	# shellcheck disable=SC2086
	AUTOKILL_VM_INIT=systemd AUTOKILL_CONTAINERD_BIN_DIR=$bd hack/vm/run.sh --timeout 600 -- \
		bin/integration.test -test.v -test.count=1 -test.timeout=540s ${AUTOKILL_SYSTEMD_TEST_ARGS:--test.run $SYSTEMD_TESTS} 2>&1 | tee "$tierlog"
	st=${PIPESTATUS[0]}
	set -e
	if [ "$st" != 0 ]; then
		rc=1
		while IFS= read -r l; do failures+=("systemd, containerd $ver: $l"); done < <(ak_failures "$tierlog")
	fi
	summary+=("systemd as pid 1, containerd $ver: $([ "$st" = 0 ] && echo PASS || echo "FAIL (exit status $st)") in $((SECONDS - t0)) s")
fi

# The setup face's root tests, on cgroup v2 and the new kernel: run from their package directory
# (they read ../spec/testdata), as the host's `go test` does.
if [[ $SUITES == *" setup "* ]] && { [ -z "${AUTOKILL_TEST_ARGS:-}" ] || [ -n "${AUTOKILL_SETUP_TEST_ARGS:-}" ]; }; then
	go test -c -o bin/setup.test ./internal/setup || die "building bin/setup.test failed"
	echo
	echo "== vm tier: internal/setup root tests =="
	t0=$SECONDS
	set +e
	# shellcheck disable=SC2086
	(cd internal/setup && ../../hack/vm/run.sh --timeout 300 -- "$PWD/../../bin/setup.test" -test.v -test.count=1 ${AUTOKILL_SETUP_TEST_ARGS:-}) 2>&1 | tee "$tierlog"
	st=${PIPESTATUS[0]}
	set -e
	if [ "$st" != 0 ]; then
		rc=1
		while IFS= read -r l; do failures+=("internal/setup: $l"); done < <(ak_failures "$tierlog")
	fi
	summary+=("internal/setup: $([ "$st" = 0 ] && echo PASS || echo "FAIL (exit status $st)") in $((SECONDS - t0)) s")
fi

# Unit tests whose outcome depends on the kernel or the cgroup layout, run from their package
# directory (testdata, fuzz seeds) in one boot: pkg/pidfd (native-mode cases, autokill on close,
# PIDFD_GET_INFO exit status, skip on the host kernel), internal/cgroups and internal/guard (cgroup
# v2 here, v1 on the host), internal/initsync (the kernel's SEQPACKET limits), pkg/shim (the ttrpc
# server), pkg/process (the lifecycle race test).
UNIT_PKGS="pkg/pidfd internal/cgroups internal/guard internal/initsync pkg/shim pkg/process"
if [[ $SUITES == *" pidfd "* || $SUITES == *" units "* ]] && [ -z "${AUTOKILL_TEST_ARGS:-}" ]; then
	script=""
	for p in $UNIT_PKGS; do
		b=bin/unit-$(echo "$p" | tr / -).test
		go test -c -o "$b" "./$p" || die "building $b failed"
		script+="echo '== vm tier: unit tests of $p =='; (cd $PWD/$p && $PWD/$b -test.v -test.count=1) || rc=1; "
	done
	echo
	t0=$SECONDS
	set +e
	hack/vm/run.sh --timeout 600 -- sh -c "rc=0; ${script}exit \$rc" 2>&1 | tee "$tierlog"
	st=${PIPESTATUS[0]}
	set -e
	if [ "$st" != 0 ]; then
		rc=1
		while IFS= read -r l; do failures+=("unit tests: $l"); done < <(ak_failures "$tierlog")
	fi
	summary+=("unit tests ($UNIT_PKGS): $([ "$st" = 0 ] && echo PASS || echo "FAIL (exit status $st)") in $((SECONDS - t0)) s")
fi
echo
for s in "${summary[@]}"; do echo "== vm tier: $s =="; done
for f in "${failures[@]}"; do echo "== vm tier failed: $f"; done
exit $rc
