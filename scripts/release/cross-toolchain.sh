#!/usr/bin/env bash
# The Dockerfiles' toolchain step: makes this Debian machine (the build stage, which runs on the
# *build* platform) able to build static musl binaries for the *target* platform, and writes the
# cargo settings for it into an env file that later steps source.
#
# Usage: cross-toolchain.sh TARGETARCH BUILDARCH ENV_FILE     (docker's names: amd64, arm64)
#
#   same arch:  rustup target + Debian's musl-tools; C code (ring) built with musl-gcc
#   cross:      rustup target + Debian's gcc-<arch>-linux-gnu; that gcc compiles the C code and links,
#               against the musl crt and libc that rustup's musl target ships (self-contained linking)
#
# ENV_FILE gets RUST_TARGET and the CC_<target> / CARGO_TARGET_<TARGET>_LINKER exports.
set -euo pipefail

log() { printf 'toolchain: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# == 3 ]] || die "usage: $0 TARGETARCH BUILDARCH ENV_FILE"
target_arch=$1 build_arch=$2 env_file=$3

triple_of() {
	case $1 in
		amd64) echo x86_64-unknown-linux-musl ;;
		arm64) echo aarch64-unknown-linux-musl ;;
		*) die "unsupported architecture '$1' (amd64 and arm64 are)" ;;
	esac
}
triple=$(triple_of "$target_arch")
triple_of "$build_arch" >/dev/null
cpu=${triple%%-*}
var=${triple//-/_}

if [[ $target_arch == "$build_arch" ]]; then
	packages=(musl-tools) cc=musl-gcc linker=
else
	# Debian names the x86-64 cross compiler gcc-x86-64-linux-gnu, the binary x86_64-linux-gnu-gcc.
	packages=("gcc-${cpu//_/-}-linux-gnu" "libc6-dev-${target_arch}-cross") cc="$cpu-linux-gnu-gcc" linker=$cc
fi

log "rust target $triple, C toolchain ${packages[*]} (build $build_arch → target $target_arch)"
rustup target add "$triple" >&2
apt-get update >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" >&2
rm -rf /var/lib/apt/lists/*
command -v "$cc" >/dev/null || die "$cc is not on PATH after installing ${packages[*]}"

{
	echo "export RUST_TARGET=$triple"
	echo "export CC_$var=$cc"
	[[ -z $linker ]] || echo "export CARGO_TARGET_${var^^}_LINKER=$linker"
} >"$env_file"
log "wrote $env_file:"
cat "$env_file" >&2
