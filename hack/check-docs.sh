#!/usr/bin/env bash
# Every fenced block of a doc that follows a "<!-- file: PATH -->" line must be PATH's content,
# byte for byte: the docs quote the files the tests run with, and must not drift from them.
#   usage: hack/check-docs.sh [DOC...]   (default: docs/*.md README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- docs/*.md README.md
fail=0
for doc in "$@"; do
	# Emits "PATH<TAB>LINE" for each marker, then the block's lines, then an end record.
	while IFS=$'\t' read -r path line; do
		want=$(cat "$path" 2>/dev/null) || {
			echo "$doc:$line: quotes $path, which does not exist" >&2
			fail=1
			continue
		}
		got=$(awk -v start="$line" 'NR > start + 1 && /^```/ { exit } NR > start + 1 { print }' "$doc")
		if [ "$got" != "$want" ]; then
			echo "$doc:$line: the block quoting $path differs from it:" >&2
			diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") >&2 || true
			fail=1
		fi
	done < <(awk '/^<!-- file: .* -->$/ { p = $3; print p "\t" NR }' "$doc")
done
exit "$fail"
