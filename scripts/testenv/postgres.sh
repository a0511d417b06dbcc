#!/usr/bin/env bash
# Makes Debian's PostgreSQL server binaries (postgres, initdb, pg_isready, psql) available in the
# testenv cache, where the tests start a throw-away server on loopback:
#
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/postgresql-<major>/bin
#
# Usage:
#   scripts/testenv/postgres.sh                  provide if needed; last stdout line = bin dir
#   scripts/testenv/postgres.sh --print-bin-dir  print the bin dir only (no check, no download)
#   scripts/testenv/postgres.sh --help
#
# Installed PostgreSQL (/usr/lib/postgresql/<major>/bin) is linked, nothing downloaded. Otherwise the
# packages are fetched with `apt-get download` and unpacked with `dpkg -x` into the cache: no root, no
# system install. <major> is what Debian's `postgresql` package depends on (DITTOFS_POSTGRES_MAJOR overrides).
# All progress goes to stderr; stdout carries only the bin dir. The tests find the binaries through
# `--print-bin-dir` (or $DITTOFS_POSTGRES_BIN, a `postgres` binary whose directory has the others).
set -euo pipefail

TOOL=postgres
HELP_LINES=2,17
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

TOOLS=(postgres initdb pg_isready psql)

# The major version: the override, the highest one installed, or the one Debian's `postgresql` depends on.
major() {
	if [[ -n ${DITTOFS_POSTGRES_MAJOR:-} ]]; then echo "$DITTOFS_POSTGRES_MAJOR"; return; fi
	local installed
	installed=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
	if [[ -n $installed ]]; then echo "$installed"; return; fi
	local depends
	depends=$(apt-cache depends postgresql 2>/dev/null || true)
	sed -n 's/^[[:space:]]*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' <<<"$depends" | head -1
}

# ok DIR: every tool runs and is of the major version.
ok() {
	local t out
	for t in "${TOOLS[@]}"; do
		[[ -x $1/$t ]] || return 1
		# Captured, not piped into grep -q (SIGPIPE under pipefail, as build.sh says).
		out=$("$1/$t" --version 2>&1) || return 1
		[[ $out == *" $MAJOR."* ]] || return 1
	done
}

MAJOR=$(major)
[[ -n $MAJOR ]] || die "cannot tell which PostgreSQL version Debian ships: apt-cache knows no 'postgresql' package (set DITTOFS_POSTGRES_MAJOR)"
DEST="$CACHE_ROOT/postgresql-$MAJOR"
BIN_DIR="$DEST/bin"
case "${1:-}" in
	--print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
	-h | --help) sed -n "${HELP_LINES}p" "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

if ok "$BIN_DIR"; then
	log "using cached PostgreSQL $MAJOR in $BIN_DIR"
	echo "$BIN_DIR"
	exit 0
fi
mkdir -p "$CACHE_ROOT"
if command -v flock >/dev/null; then
	exec 9>"$CACHE_ROOT/.build-$TOOL.lock"
	flock 9
fi
START=$SECONDS
# Assembled under a temp dir on the same filesystem, published by one rename: a half-made tree is never seen.
WORK=$(mktemp -d "$CACHE_ROOT/.build-postgresql-$MAJOR.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/final/bin"
SYSTEM=/usr/lib/postgresql/$MAJOR/bin
if ok "$SYSTEM" 2>/dev/null; then
	# PostgreSQL finds its share/ and lib/ from its real path, so links to the installed binaries work.
	log "linking the installed PostgreSQL $MAJOR ($SYSTEM)"
	for t in "${TOOLS[@]}"; do ln -s "$SYSTEM/$t" "$WORK/final/bin/$t"; done
else
	command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
		die "PostgreSQL $MAJOR is not installed and apt-get/dpkg are missing to fetch it"
	if [[ $EUID -eq 0 && ${HOME:-/root} == /root* ]]; then
		# As root the tests run postgres as nobody (it refuses root), and nobody cannot reach a tree under
		# /root: install Debian's package instead (its binaries are in /usr/lib/postgresql), then link them.
		log "installing postgresql-$MAJOR from Debian's packages (root: the server must run as nobody)…"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$MAJOR" >&2 ||
			{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$MAJOR" >&2; } ||
			die "apt-get install postgresql-$MAJOR failed"
		for t in "${TOOLS[@]}"; do ln -s "$SYSTEM/$t" "$WORK/final/bin/$t"; done
		rm -rf "$DEST"
		mv "$WORK/final" "$DEST"
		ok "$BIN_DIR" || die "the PostgreSQL tools in $BIN_DIR do not run or are not version $MAJOR"
		log "PostgreSQL $MAJOR ready in $(fmt_secs $((SECONDS - START))) in $BIN_DIR"
		echo "$BIN_DIR"
		exit 0
	fi
	packages=("postgresql-$MAJOR" "postgresql-client-$MAJOR" libpq5)
	log "downloading ${packages[*]} with apt-get download (no install)…"
	(cd "$WORK" && apt-get download "${packages[@]}" >&2) ||
		die "apt-get download failed (run 'apt-get update' first, or install postgresql-$MAJOR)"
	for deb in "$WORK"/*.deb; do
		log "unpacking $(basename "$deb")"
		dpkg -x "$deb" "$WORK/final/root"
	done
	root="$WORK/final/root"
	libs="$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)"
	# The unpacked libpq is not on the loader's path: each tool is a wrapper that adds it. The final path is
	# written in, since the tree moves into place afterwards.
	final_root="$DEST/root"
	final_libs="$final_root${libs#"$root"}"
	for t in "${TOOLS[@]}"; do
		[[ -x $root/usr/lib/postgresql/$MAJOR/bin/$t ]] || die "$t is not in the downloaded packages"
		printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
			"$final_libs" "$final_root/usr/lib/postgresql/$MAJOR/bin/$t" >"$WORK/final/bin/$t"
		chmod 755 "$WORK/final/bin/$t"
	done
	missing=$(LD_LIBRARY_PATH="$libs" ldd "$root/usr/lib/postgresql/$MAJOR/bin/postgres" 2>/dev/null | grep 'not found' || true)
	[[ -z $missing ]] || die "the downloaded postgres needs libraries this machine lacks (install postgresql-$MAJOR instead):
$missing"
fi
rm -rf "$DEST"
mv "$WORK/final" "$DEST"
ok "$BIN_DIR" || die "the PostgreSQL tools in $BIN_DIR do not run or are not version $MAJOR"
log "PostgreSQL $MAJOR ready in $(fmt_secs $((SECONDS - START))) in $BIN_DIR"
echo "$BIN_DIR"
