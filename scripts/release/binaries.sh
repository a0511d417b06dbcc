#!/usr/bin/env bash
# Builds the static release binaries (musl, static-pie) of the host's architecture:
#
#   ${CARGO_TARGET_DIR:-target}/release-static/<arch>/{dittofs-agent,dittofs-controller}
#
# with <arch> the image platform name (amd64, arm64). Each binary is built by its own
# `cargo build -p <crate> --bin <bin>`: built together, cargo would unify the features of both
# dependency trees and the agent would carry the controller's.
#
# Usage:
#   scripts/release/binaries.sh              install what is missing, build; last stdout line = dir
#   scripts/release/binaries.sh --print-dir  print the dir only (no check, no build)
#   scripts/release/binaries.sh --help
#
# Installs what is missing, with progress: the rustup target, and Debian's musl-tools for
# musl-gcc (the C parts of ring are compiled with it). All progress goes to stderr.
set -euo pipefail

# crate:binary:cargo profile. The agent's profile optimises for size (see Cargo.toml).
CRATES=(dittofs-agent:dittofs-agent:release-agent dittofs-controller:dittofs-controller:release)

log() { printf 'release: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 TRIPLE=x86_64-unknown-linux-musl ;;
	aarch64 | arm64) ARCH=arm64 TRIPLE=aarch64-unknown-linux-musl ;;
	*) die "no musl target known for $(uname -m) (amd64 and arm64 are)" ;;
esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TARGET_DIR/release-static/$ARCH"

case "${1:-}" in
	--print-dir) echo "$OUT"; exit 0 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Installs Debian packages `$@` (as root, or through sudo), with apt's own progress on stderr.
apt_install() {
	local sudo=
	if [[ $(id -u) != 0 ]]; then
		command -v sudo >/dev/null || die "need root (or sudo) to install $*; or install them yourself"
		sudo=sudo
	fi
	command -v apt-get >/dev/null || die "no apt-get here: install $* with this system's package manager"
	log "installing $* (apt-get)…"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 || {
		log "apt-get install failed; updating the package lists once and retrying"
		$sudo apt-get update >&2
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
	}
}

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
	command -v rustup >/dev/null || die "rust target $TRIPLE is missing and there is no rustup to add it"
	log "adding the rust target $TRIPLE (rustup)…"
	rustup target add "$TRIPLE" >&2
fi
command -v musl-gcc >/dev/null || apt_install musl-tools
command -v musl-gcc >/dev/null || die "musl-tools is installed but musl-gcc is not on PATH"
# cc-rs (ring's build script) would look for <arch>-linux-musl-gcc, which Debian does not ship.
export "CC_${TRIPLE//-/_}=musl-gcc"

mkdir -p "$OUT"
# Two `make release` at once would overwrite each other's binaries mid-copy.
if command -v flock >/dev/null; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		log "another release build is running (lock $OUT/.lock); waiting for it…"
		flock 9
	fi
fi

START=$SECONDS
for entry in "${CRATES[@]}"; do
	IFS=: read -r crate bin profile <<<"$entry"
	t0=$SECONDS
	log "building $bin for $TRIPLE (cargo build --profile $profile -p $crate; thin LTO: up to ~25 min cold on 2 busy cores)…"
	cargo build --profile "$profile" --locked --target "$TRIPLE" -p "$crate" --bin "$bin" >&2
	built="$TARGET_DIR/$TRIPLE/$profile/$bin"
	[[ -x $built ]] || die "cargo reported success but $built does not exist"
	# Published by one rename: a reader never sees a half-copied binary.
	cp "$built" "$OUT/.$bin.tmp"
	mv -f "$OUT/.$bin.tmp" "$OUT/$bin"
	log "  $bin: $(du -k "$OUT/$bin" | cut -f1) KiB in $(fmt_secs $((SECONDS - t0)))"
done
log "static binaries in $OUT ($(fmt_secs $((SECONDS - START))))"
echo "$OUT"
