# shellcheck shell=bash
# Reproducible OCI image layouts without a registry or a daemon: what hack/build-image.sh and
# hack/cri/images.sh share. Source it; it defines functions only.
#   oci_init LAYOUT                   an empty layout (oci-layout, blobs/sha256/)
#   oci_layer LAYOUT ROOTFS           a gzip layer of ROOTFS's tree: prints "DIGEST DIFF_ID SIZE"
#   oci_image LAYOUT NAME CONFIG HISTORY LAYER...
#                                     config + manifest for the layers (each "DIGEST DIFF_ID SIZE",
#                                     lowest first); CONFIG is the JSON object of the image config's
#                                     "config" (Env, Cmd, User...); NAME (repo:tag) goes to index.json
#                                     as io.containerd.image.name; prints the manifest digest
#   oci_index LAYOUT                  writes index.json from the oci_image calls so far
#   oci_tar LAYOUT OUT                a reproducible tar of the layout (what ctr images import takes)
# Reproducible means: names sorted, mtime 0, uid/gid 0 (numeric), gzip -n, no timestamps in the
# JSON. Same input files, same digests. Every file is owned by root inside the image.

# oci_init LAYOUT
oci_init() {
	mkdir -p "$1/blobs/sha256"
	printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
	: >"$1/.index-entries"
}

# oci_blob LAYOUT FILE: moves FILE into the layout's blobs; prints its sha256 (hex).
oci_blob() {
	local d
	d=$(sha256sum "$2" | cut -d' ' -f1)
	chmod 0644 "$2"
	mv "$2" "$1/blobs/sha256/$d"
	echo "$d"
}

# oci_layer LAYOUT ROOTFS
oci_layer() {
	local tmp diff size
	tmp=$(mktemp "$1/.layer.XXXXXX")
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
		-C "$2" -cf "$tmp" .
	diff=$(sha256sum "$tmp" | cut -d' ' -f1)
	gzip -n -9 -c "$tmp" >"$tmp.gz"
	rm -f "$tmp"
	size=$(stat -c %s "$tmp.gz")
	echo "$(oci_blob "$1" "$tmp.gz") $diff $size"
}

# oci_image LAYOUT NAME CONFIG HISTORY LAYER...
oci_image() {
	local layout=$1 name=$2 conf=$3 hist=$4 arch l d s diffs="" layers="" history="" f sep=""
	shift 4
	arch=$(dpkg --print-architecture)
	for l in "$@"; do
		read -r d f s <<<"$l"
		diffs+="$sep\"sha256:$f\""
		layers+="$sep{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$s}"
		history+="$sep{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"$hist\"}"
		sep=,
	done
	f=$(mktemp "$layout/.json.XXXXXX")
	printf '%s' '{"architecture":"'"$arch"'","os":"linux","created":"1970-01-01T00:00:00Z","config":'"$conf"',"rootfs":{"type":"layers","diff_ids":['"$diffs"']},"history":['"$history"']}' >"$f"
	s=$(stat -c %s "$f")
	d=$(oci_blob "$layout" "$f")
	f=$(mktemp "$layout/.json.XXXXXX")
	printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$d"'","size":'"$s"'},"layers":['"$layers"']}' >"$f"
	s=$(stat -c %s "$f")
	d=$(oci_blob "$layout" "$f")
	printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}\n' \
		"$d" "$s" "$arch" "$name" "${name##*:}" >>"$layout/.index-entries"
	echo "$d"
}

# oci_index LAYOUT
oci_index() {
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
		"$(paste -sd, "$1/.index-entries")" >"$1/index.json"
}

# oci_tar LAYOUT OUT
oci_tar() {
	find "$1" -exec touch -h -d @0 {} +
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
		-C "$1" -cf "$2" oci-layout index.json blobs
}
