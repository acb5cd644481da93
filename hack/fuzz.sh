#!/usr/bin/env bash
# Runs each Go fuzz target for FUZZTIME, one after the other (go test -fuzz takes one target at a
# time). A crasher is written to the package's testdata/fuzz/ and fails the run: keep it there.
#   usage: hack/fuzz.sh FUZZTIME PARALLEL PKG:TARGET...
# go test -fuzz itself sometimes ends a clean run with "context deadline exceeded" when the time
# runs out while it minimizes a new interesting input (no failing input is written then): that is
# retried (up to twice), so that only a real crasher, or three such ends in a row, fails the suite.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
time=$1 par=$2
shift 2
rc=0
for t in "$@"; do
	pkg=${t%%:*} target=${t#*:}
	for attempt in 1 2 3; do
		echo "== $target ($pkg, $time)"
		out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -fuzzminimizetime 5s \
			-parallel "$par" "./$pkg" 2>&1)
		st=$?
		printf '%s\n' "$out"
		[ $st -ne 0 ] || break
		if [ $attempt -lt 3 ] && ! grep -q 'Failing input written' <<<"$out" &&
			grep -q 'context deadline exceeded' <<<"$out"; then
			echo "== $target: go test -fuzz ended on its own deadline, not on a failing input: again"
			continue
		fi
		rc=1
		break
	done
done
exit $rc
