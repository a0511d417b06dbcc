#!/usr/bin/env bash
# Builds the two OCI images FROM scratch out of the static binaries of binaries.sh, with
# buildah (Debian's, installed when missing) and no daemon:
#
#   ${CARGO_TARGET_DIR:-target}/images/<arch>/dittofs-{agent,controller}/      OCI layout (skopeo/podman oci:…)
#   ${CARGO_TARGET_DIR:-target}/images/<arch>/dittofs-{agent,controller}.tar   the same as an oci-archive
#
# Each image holds one file, /dittofs-<name> (0755), runs as 65532:65532 with it as entrypoint,
# and carries the org.opencontainers.image.* labels. buildah keeps its storage (vfs driver) under
# ${CARGO_TARGET_DIR:-target}/images/.buildah, apart from the machine's own.
#
# Usage:
#   scripts/release/images.sh              build; last stdout line = the images dir
#   scripts/release/images.sh --print-dir  print the images dir only (no check, no build)
#   scripts/release/images.sh --help
#
# Labels from the environment when set: IMAGE_VERSION (default: the crates' version),
# IMAGE_REVISION (default: git HEAD), IMAGE_CREATED (default: SOURCE_DATE_EPOCH, else HEAD's commit
# time, which also dates the config and the files: the same commit gives the same image), IMAGE_SOURCE.
# Progress goes to stderr.
set -euo pipefail

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=$("$ROOT/scripts/release/binaries.sh" --print-dir)
ARCH=$(basename "$BIN_DIR")
OUT="$TARGET_DIR/images/$ARCH"

case "${1:-}" in
	--print-dir) echo "$OUT"; exit 0 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

for bin in dittofs-agent dittofs-controller; do
	[[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin is missing: run scripts/release/binaries.sh (or make release) first"
done

if ! command -v buildah >/dev/null; then
	sudo=
	[[ $(id -u) == 0 ]] || sudo=sudo
	command -v apt-get >/dev/null || die "buildah is missing and there is no apt-get here: install buildah"
	log "installing buildah (apt-get; about 30 MB)…"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends buildah >&2 || {
		log "apt-get install failed; updating the package lists once and retrying"
		$sudo apt-get update >&2
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends buildah >&2
	}
fi

VERSION=${IMAGE_VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/agent/Cargo.toml" | head -1)}
REVISION=${IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}
# One time for the labels, the config and the layer's file times: the same commit gives the same image.
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
CREATED=${IMAGE_CREATED:-$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)}
SOURCE=${IMAGE_SOURCE:-$(git -C "$ROOT" remote get-url origin 2>/dev/null || echo https://github.com/dittofs/dittofs-operator)}

# Root without a daemon: vfs needs no overlay mounts, chroot isolation no user namespaces (and
# nothing is RUN anyway). Its own storage, so nothing here touches the machine's images.
STORE="$TARGET_DIR/images/.buildah"
mkdir -p "$OUT" "$STORE"
bah() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot

if command -v flock >/dev/null; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		log "another image build is running (lock $OUT/.lock); waiting for it…"
		flock 9
	fi
fi

declare -A DESCRIPTION=(
	[dittofs-agent]="Sidecar in every DittoFS pod: reports the running adapters into its DittoServer's status"
	[dittofs-controller]="Kubernetes controller for DittoFS: Services, ports and NetworkPolicies follow the running adapters"
)

START=$SECONDS
for name in dittofs-agent dittofs-controller; do
	t0=$SECONDS
	log "building $name:$VERSION for linux/$ARCH from scratch…"
	ctr=$(bah from --quiet scratch)
	trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
	bah copy --quiet --chmod 0755 "$ctr" "$BIN_DIR/$name" "/$name" >/dev/null
	bah config --created-by "COPY $name /$name (scripts/release/images.sh)" \
		--os linux --arch "$ARCH" --user 65532:65532 --entrypoint "[\"/$name\"]" \
		--label "org.opencontainers.image.title=$name" \
		--label "org.opencontainers.image.description=${DESCRIPTION[$name]}" \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.revision=$REVISION" \
		--label "org.opencontainers.image.source=$SOURCE" \
		--label "org.opencontainers.image.licenses=Apache-2.0" \
		--label "org.opencontainers.image.created=$CREATED" \
		"$ctr"
	ref="localhost/$name:$VERSION"
	bah commit --quiet --format oci --timestamp "$EPOCH" --identity-label=false --rm "$ctr" "$ref" >/dev/null
	trap - EXIT
	# Written beside, then swapped in: the test and skopeo never read a half-written layout.
	rm -rf "$OUT/.$name.tmp" "$OUT/.$name.tar.tmp"
	bah push --quiet "$ref" "oci:$OUT/.$name.tmp:$name:$VERSION" >&2
	bah push --quiet "$ref" "oci-archive:$OUT/.$name.tar.tmp:$name:$VERSION" >&2
	rm -rf "$OUT/$name"
	mv "$OUT/.$name.tmp" "$OUT/$name"
	mv -f "$OUT/.$name.tar.tmp" "$OUT/$name.tar"
	# Exported: the store need not keep it (it would keep every build's image otherwise).
	bah rmi "$ref" >/dev/null
	log "  $name: $(du -sk "$OUT/$name" | cut -f1) KiB OCI layout in $OUT/$name ($((SECONDS - t0)) s)"
done
log "images in $OUT ($((SECONDS - START)) s); push with: skopeo copy oci:$OUT/dittofs-agent docker://REGISTRY/dittofs-agent:$VERSION"
echo "$OUT"
