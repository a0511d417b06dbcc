#!/usr/bin/env bash
# Makes Debian's OpenLDAP server (slapd, with slapadd) available to the LDAP tests, unpacked from
# Debian's packages into the test cache, never installed on the system:
#
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/slapd-<version>/root/usr/sbin/slapd
#
# Usage:
#   scripts/testenv/slapd.sh               download and unpack if needed; last stdout line = the root dir
#   scripts/testenv/slapd.sh --print-root  print the root dir only (no check, no download)
#   scripts/testenv/slapd.sh --help
#
# The root holds usr/sbin/slapd, its modules (usr/lib/ldap), the schemas (etc/ldap/schema) and the
# libraries Debian's base system lacks (usr/lib/x86_64-linux-gnu): the harness runs slapd with
# LD_LIBRARY_PATH and a `modulepath` into it. All progress goes to stderr.
set -euo pipefail

CACHE_ROOT=${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}
# Pinned to Debian 12's; the packages are fetched at this version, so the cache key holds.
VERSION=2.5.13+dfsg-5
# slapd and what it links that a minimal Debian 12 lacks (`apt-get install -s slapd` on such a machine).
PACKAGES=("slapd=$VERSION" libltdl7 libodbc2 libwrap0)
DEST="$CACHE_ROOT/slapd-$VERSION"
ROOT="$DEST/root"

log() { printf 'testenv(slapd): %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
	--print-root) echo "$ROOT"; exit 0 ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

ok() {
	[[ -x $1/usr/sbin/slapd ]] || return 1
	LD_LIBRARY_PATH="$1/usr/lib/x86_64-linux-gnu" "$1/usr/sbin/slapd" -VV >/dev/null 2>&1
}

if ok "$ROOT"; then
	log "using cached slapd in $ROOT"
	echo "$ROOT"
	exit 0
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs apt-get and dpkg (Debian's packages)"
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build-slapd.lock"
flock 9
if ok "$ROOT"; then
	echo "$ROOT"
	exit 0
fi

# Unpacked under a temp dir on the same filesystem and published by one rename: never half there.
WORK=$(mktemp -d "$CACHE_ROOT/.build-slapd.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
log "downloading ${PACKAGES[*]} from Debian's packages (once)"
if ! (cd "$WORK" && apt-get download "${PACKAGES[@]}" >&2); then
	log "package lists look stale; running apt-get update"
	apt-get update >&2 || die "apt-get update failed"
	(cd "$WORK" && apt-get download "${PACKAGES[@]}" >&2) || die "apt-get download ${PACKAGES[*]} failed"
fi
mkdir -p "$WORK/root"
for deb in "$WORK"/*.deb; do
	log "unpacking $(basename "$deb")"
	dpkg -x "$deb" "$WORK/root"
done
ok "$WORK/root" || die "the unpacked slapd does not run: LD_LIBRARY_PATH=$WORK/root/usr/lib/x86_64-linux-gnu $WORK/root/usr/sbin/slapd -VV"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$WORK/root" "$ROOT"
log "slapd $VERSION ready in $((SECONDS - START)) s: $ROOT"
echo "$ROOT"
