#!/usr/bin/env bash
# Builds the CRI test tools from the Go module proxy into $AUTOKILL_CACHE/cri/bin (versions in
# hack/lib.sh), each only when missing:
#   crictl, registry (distribution v3), cni/{bridge,loopback,host-local,portmap}, and
#   critest-<DIGEST>: critest as a Ginkgo test binary whose testLinuxImageWithDigest names
#   test-image-digest by DIGEST, the digest of our local build of it (upstream's digest names an image
#   that cannot be rebuilt offline). Without DIGEST, critest is not built.
#   usage: hack/cri/tools.sh [sha256:DIGEST]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

log() { printf '[cri-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

DIGEST=${1:-}
BIN=$AK_CRI_CACHE/bin
mkdir -p "$BIN/cni"
need_go() { command -v go >/dev/null || die "go is not on PATH (needed to build $1)"; }
exec 9>"$AK_CRI_CACHE/tools.lock"
flock 9

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# build_tool BINARY PKG@VERSION: go install into a temp GOBIN, then move into place, so that an
# interrupted build leaves nothing half-written under the cache.
build_tool() {
	local dst=$1 pkg=$2 name
	name=$(basename "${pkg%@*}")
	[ -x "$dst" ] && return 0
	need_go "$pkg"
	log "building $pkg"
	GOBIN=$tmp/gobin CGO_ENABLED=0 go install -trimpath "$pkg"
	mv -f "$tmp/gobin/$name" "$dst"
}

build_tool "$BIN/crictl-$AK_CRI_TOOLS_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$AK_CRI_TOOLS_VERSION"
ln -sfn "crictl-$AK_CRI_TOOLS_VERSION" "$BIN/crictl"
build_tool "$BIN/registry-$AK_REGISTRY_VERSION" "github.com/distribution/distribution/v3/cmd/registry@$AK_REGISTRY_VERSION"
for p in "${AK_CNI_PLUGINS[@]}"; do
	build_tool "$BIN/cni/$(basename "$p")-$AK_CNI_VERSION" "github.com/containernetworking/plugins/plugins/$p@$AK_CNI_VERSION"
	# CNI finds a plugin by its type name in bin_dirs.
	mkdir -p "$BIN/cni-$AK_CNI_VERSION"
	ln -sfn "../cni/$(basename "$p")-$AK_CNI_VERSION" "$BIN/cni-$AK_CNI_VERSION/$(basename "$p")"
done

[ -n "$DIGEST" ] || exit 0
[[ $DIGEST =~ ^sha256:[0-9a-f]{64}$ ]] || die "digest $DIGEST: want sha256:<64 hex>"
CRITEST=$BIN/critest-$AK_CRI_TOOLS_VERSION-${DIGEST#sha256:}
if [ ! -x "$CRITEST" ]; then
	need_go critest
	log "building critest $AK_CRI_TOOLS_VERSION (test-image-digest@$DIGEST)"
	# A scratch module that requires cri-tools and carries a patched copy of it: the copy in the
	# module cache is read-only and shared.
	(
		cd "$tmp"
		go mod init autokill.invalid/critest >/dev/null 2>&1
		go mod download "sigs.k8s.io/cri-tools@$AK_CRI_TOOLS_VERSION"
		src=$(go mod download -json "sigs.k8s.io/cri-tools@$AK_CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
		[ -d "$src" ] || die "no source for cri-tools@$AK_CRI_TOOLS_VERSION"
		cp -r "$src" cri-tools
		chmod -R u+w cri-tools
		c=cri-tools/pkg/validate/consts.go
		grep -q 'testLinuxImageWithDigest *= registry + "test-image-digest@sha256:' "$c" ||
			die "$c: testLinuxImageWithDigest not found where expected (cri-tools changed?)"
		sed -i "s|\(testLinuxImageWithDigest *= registry + \"test-image-digest@\)sha256:[0-9a-f]*\"|\1$DIGEST\"|" "$c"
		grep -q "test-image-digest@$DIGEST\"" "$c" || die "patching $c failed"
		# Built inside its own module (its go.mod and go.sum), as its Makefile does.
		cd cri-tools
		CGO_ENABLED=0 go test -c -trimpath -mod=readonly -o "$CRITEST.tmp" \
			-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$AK_CRI_TOOLS_VERSION" ./cmd/critest
	)
	mv -f "$CRITEST.tmp" "$CRITEST"
fi
ln -sfn "$(basename "$CRITEST")" "$BIN/critest"
log "critest: $CRITEST"
