#!/usr/bin/env bash
# Host tier of the integration tests: builds bin/integration.test once and runs it against
# containerd 1.6 (/usr/bin) and containerd 2.4.2 ($AUTOKILL_CACHE/containerd-2.4.2/bin).
# Both versions run even if the first fails; the exit code is non-zero if either failed.
#   AUTOKILL_RUNTIME    runtime under test (default io.containerd.autokill.v1; io.containerd.runc.v2
#                       runs the same tests against the reference shim)
#   AUTOKILL_VERSIONS   which containerd bin dirs to use (default "1.6 2.4.2")
#   AUTOKILL_TEST_ARGS  extra flags for the test binary (e.g. "-test.run TestCtr")
# Run as root, after hack/deps.sh and hack/build-image.sh (make deps), and make build.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${AUTOKILL_CACHE:-/var/cache/autokill}
export AUTOKILL_IMAGE_TAR=${AUTOKILL_IMAGE_TAR:-$CACHE/images/busybox.tar}
export AUTOKILL_RUNTIME=${AUTOKILL_RUNTIME:-io.containerd.autokill.v1}
# The shim is needed only for the autokill runtime (the reference runc runs without it).
if [ "$AUTOKILL_RUNTIME" = io.containerd.autokill.v1 ] || [ -x "$PWD/bin/containerd-shim-autokill-v1" ]; then
	export AUTOKILL_SHIM=${AUTOKILL_SHIM:-$PWD/bin/containerd-shim-autokill-v1}
fi

go test -c -o bin/integration.test ./integration

rc=0
for v in ${AUTOKILL_VERSIONS:-1.6 2.4.2}; do
	case "$v" in
	1.6) bd=/usr/bin ;;
	2.4.2) bd=$CACHE/containerd-2.4.2/bin ;;
	*) bd=$v ;;
	esac
	ver=$("$bd/containerd" --version 2>/dev/null | awk '{print $3}') || ver="missing in $bd"
	echo
	echo "== host tier: kernel $(uname -r), containerd ${ver} (runtime $AUTOKILL_RUNTIME) =="
	# shellcheck disable=SC2086
	if AUTOKILL_CONTAINERD_BIN_DIR=$bd bin/integration.test -test.v -test.count=1 -test.timeout=20m ${AUTOKILL_TEST_ARGS:-}; then
		echo "== host tier: containerd ${ver}: PASS =="
	else
		echo "== host tier: containerd ${ver}: FAIL =="
		rc=1
	fi
done
exit $rc
