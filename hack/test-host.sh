#!/usr/bin/env bash
# Host tier of the integration tests: builds bin/integration.test once and runs it against each
# containerd of AUTOKILL_VERSIONS (default: hack/lib.sh's AK_HOST_VERSIONS, 1.6 1.7 2.2 2.4).
# Every version runs even if an earlier one fails; the exit code is non-zero if any failed.
#   AUTOKILL_RUNTIME    runtime under test (default io.containerd.autokill.v1; io.containerd.runc.v2
#                       runs the same tests against the reference shim)
#   AUTOKILL_VERSIONS   containerd versions (1.7, 2.4.2, ...) or bin dirs
#   AUTOKILL_TEST_ARGS  extra flags for the test binary (e.g. "-test.run TestCtr")
#   hack/test-host.sh ref   the reference run (make test-ref): AK_REF_TESTS of hack/lib.sh against
#                       io.containerd.runc.v2 on containerd AK_REF_VERSION; AUTOKILL_TEST_ARGS adds flags
# Run as root, after hack/deps.sh and hack/build-image.sh (make deps), and make build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

case ${1:-} in
"") ;;
ref)
	export AUTOKILL_RUNTIME=io.containerd.runc.v2
	AUTOKILL_VERSIONS=$AK_REF_VERSION
	AUTOKILL_TEST_ARGS="-test.run $AK_REF_TESTS ${AUTOKILL_TEST_ARGS:-}"
	;;
*)
	sed -n '2,12p' "$0" >&2
	exit 2
	;;
esac

export AUTOKILL_IMAGE_TAR=${AUTOKILL_IMAGE_TAR:-$AUTOKILL_CACHE/images/busybox.tar}
export AUTOKILL_RUNTIME=${AUTOKILL_RUNTIME:-io.containerd.autokill.v1}
# The shim is needed only for the autokill runtime (the reference runc runs without it).
if [ "$AUTOKILL_RUNTIME" = io.containerd.autokill.v1 ] || [ -x "$PWD/bin/containerd-shim-autokill-v1" ]; then
	export AUTOKILL_SHIM=${AUTOKILL_SHIM:-$PWD/bin/containerd-shim-autokill-v1}
fi

read -ra versions <<<"${AUTOKILL_VERSIONS:-$AK_HOST_VERSIONS}"
dirs=()
for v in "${versions[@]}"; do
	bd=$(ak_bin_dir "$v") || exit 2
	dirs+=("$bd")
done

go test -c -o bin/integration.test ./integration

rc=0
summary=()
failures=()
tierlog=$(mktemp)
trap 'rm -f "$tierlog"' EXIT
for bd in "${dirs[@]}"; do
	ver=$("$bd/containerd" --version 2>/dev/null | awk '{print $3}') || ver="missing in $bd"
	echo
	echo "== host tier: kernel $(uname -r), containerd ${ver} (runtime $AUTOKILL_RUNTIME) =="
	t0=$SECONDS
	# shellcheck disable=SC2086 # AUTOKILL_TEST_ARGS is a list of flags
	if AUTOKILL_CONTAINERD_BIN_DIR=$bd bin/integration.test -test.v -test.count=1 -test.timeout=20m ${AUTOKILL_TEST_ARGS:-} 2>&1 | tee "$tierlog"; then
		res=PASS
	else
		res=FAIL
		rc=1
		while IFS= read -r l; do failures+=("containerd ${ver}: $l"); done < <(ak_failures "$tierlog")
	fi
	echo "== host tier: containerd ${ver}: $res =="
	summary+=("containerd ${ver}: $res in $((SECONDS - t0)) s")
done
echo
for s in "${summary[@]}"; do echo "== host tier ($AUTOKILL_RUNTIME): $s =="; done
for f in "${failures[@]}"; do echo "== host tier failed: $f"; done
exit $rc
