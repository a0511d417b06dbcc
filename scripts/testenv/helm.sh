#!/usr/bin/env bash
# Builds helm (the chart tests run `helm lint`, `helm template` and `helm install`)
# from the Go module proxy into the same per-version cache as build.sh:
#
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/helm-<version>/bin/helm
#
# Usage:
#   scripts/testenv/helm.sh                  build if needed; last stdout line = bin dir
#   scripts/testenv/helm.sh --print-bin-dir  print the bin dir only (no check, no build)
#   scripts/testenv/helm.sh --help
#
# All progress goes to stderr; stdout carries only the bin dir. The tests find
# helm through `--print-bin-dir` (or $DITTOFS_HELM_BIN, a helm binary elsewhere).
set -euo pipefail

# helm.sh/helm/v3 on the Go module proxy (`go list -m -versions helm.sh/helm/v3`).
HELM_VERSION=v3.22.0

CACHE_ROOT=${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}
KEY="helm-${HELM_VERSION}"
DEST="$CACHE_ROOT/$KEY"
BIN_DIR="$DEST/bin"

log() { printf 'testenv(helm): %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
	--print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

# `helm version --short` prints e.g. v3.22.0+g (no commit: the proxy knows none).
cache_ok() {
	local out
	[[ -x $1/helm ]] || return 1
	# Captured, not piped into grep -q (see build.sh: SIGPIPE under pipefail).
	out=$("$1/helm" version --short 2>&1) && [[ $out == "$HELM_VERSION"* ]]
}

if cache_ok "$BIN_DIR"; then
	log "using cached helm in $BIN_DIR"
	echo "$BIN_DIR"
	exit 0
fi

command -v go >/dev/null || die "Go is required to build helm (https://go.dev/dl/)"
mkdir -p "$CACHE_ROOT"

# Its own lock, so a helm build never waits for (or blocks) the Kubernetes one.
if command -v flock >/dev/null; then
	exec 9>"$CACHE_ROOT/.build-helm.lock"
	if ! flock -n 9; then
		log "another helm build is running (lock $CACHE_ROOT/.build-helm.lock); waiting for it…"
		flock 9
	fi
	if cache_ok "$BIN_DIR"; then
		log "using cached helm in $BIN_DIR (built by the other run)"
		echo "$BIN_DIR"
		exit 0
	fi
fi

# Built under a temp dir on the same filesystem, published by one rename.
WORK=$(mktemp -d "$CACHE_ROOT/.build-$KEY.XXXXXX")
HEARTBEAT=
cleanup() {
	if [[ -n $HEARTBEAT ]]; then kill "$HEARTBEAT" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/bin"

START=$SECONDS
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false"

log "building helm $HELM_VERSION into $BIN_DIR (about 5 min on 2 cores with cold Go caches, once)"
log "$(go version); module cache $(go env GOMODCACHE)"

info=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION")
gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
[[ -f $gomod ]] || die "could not locate go.mod of helm.sh/helm/v3@$HELM_VERSION"

# As helm's own Makefile does: the version, and the Kubernetes version its
# client-go is from (v0.N.x → 1.N). Without the latter `helm template` and
# `helm lint` assume Kubernetes 1.20 and refuse a chart asking for more.
client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go[[:space:]]\{1,\}v0\.\([0-9]\{1,\}\)\..*#\1#p' "$gomod")
[[ -n $client_go ]] || die "found no k8s.io/client-go requirement in $gomod"
flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go"
done

# A heartbeat every 30 s so the compile visibly makes progress.
(
	trap 'kill "$nap" 2>/dev/null; exit 0' TERM
	while :; do
		sleep 30 &
		nap=$!
		wait "$nap"
		log "      … still building helm ($(fmt_secs $((SECONDS - START))) so far)"
	done
) >&2 &
HEARTBEAT=$!
# `go install pkg@version` builds with helm's own go.mod and go.sum: exactly
# the dependency versions upstream releases use, no throwaway module needed.
GOBIN="$WORK/bin" go install -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
kill "$HEARTBEAT" 2>/dev/null || true
wait "$HEARTBEAT" 2>/dev/null || true
HEARTBEAT=

cache_ok "$WORK/bin" || die "the freshly built helm does not report $HELM_VERSION (see $WORK/bin)"

mkdir -p "$WORK/final"
mv "$WORK/bin" "$WORK/final/bin"
rm -rf "$DEST"
mv "$WORK/final" "$DEST"

log "built in $(fmt_secs $((SECONDS - START))): helm $("$BIN_DIR/helm" version --short)"
echo "$BIN_DIR"
