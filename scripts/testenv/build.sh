#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries the integration tests run
# (etcd, kube-apiserver, kube-controller-manager, kubectl) from Go modules
# served by the Go module proxy, into a per-version cache outside the repo:
#
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/<k8s>-etcd<etcd>/bin/
#
# Usage:
#   scripts/testenv/build.sh                  build if needed; last stdout line = bin dir
#   scripts/testenv/build.sh --print-bin-dir  print the bin dir only (no check, no build)
#   scripts/testenv/build.sh --help
#
# All progress goes to stderr; stdout carries only the bin dir, so a Makefile
# can do  BIN := $(shell scripts/testenv/build.sh | tail -n1).
#
# The pins below are mirrored in tests/src/kube/binaries.rs (a unit test there
# checks they agree); change both together.
set -euo pipefail

K8S_VERSION=v1.35.4
# Kubernetes publishes each staging module (k8s.io/api, k8s.io/client-go, ...)
# as v0.<minor>.<patch> of the same release.
STAGING_VERSION=v0.35.4
# Newest v3.6.x on the Go module proxy when pinned (`go list -m -versions go.etcd.io/etcd/server/v3`).
ETCD_VERSION=v3.6.16

CACHE_ROOT=${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}
KEY="${K8S_VERSION}-etcd${ETCD_VERSION#v}"
DEST="$CACHE_ROOT/$KEY"
BIN_DIR="$DEST/bin"

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
	--print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	"") ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

# True when every binary in $1 exists and reports the pinned version. Each
# version command is a plain process start (no network), so this stays far
# under a second even for the ~100 MB apiserver.
cache_ok() {
	local dir=$1 out
	[[ -x $dir/etcd && -x $dir/kube-apiserver && -x $dir/kube-controller-manager && -x $dir/kubectl ]] || return 1
	# Captured, not piped into `grep -q`: with pipefail, grep exiting at the
	# first match can SIGPIPE the writer and fail a perfectly good check.
	out=$("$dir/kube-apiserver" --version 2>&1) && [[ $out == *"Kubernetes $K8S_VERSION"* ]] || return 1
	out=$("$dir/kube-controller-manager" --version 2>&1) && [[ $out == *"Kubernetes $K8S_VERSION"* ]] || return 1
	out=$("$dir/kubectl" version --client 2>&1) && [[ $out == *"Client Version: $K8S_VERSION"* ]] || return 1
	out=$("$dir/etcd" --version 2>&1) && [[ $out == *"etcd Version: ${ETCD_VERSION#v}"* ]] || return 1
}

if cache_ok "$BIN_DIR"; then
	log "using cached binaries in $BIN_DIR"
	echo "$BIN_DIR"
	exit 0
fi

command -v go >/dev/null || die "Go is required to build the test binaries (https://go.dev/dl/)"
mkdir -p "$CACHE_ROOT"

# Two concurrent `make test` runs must not build twice or race on the final
# rename: serialise on a lock file and re-check the cache once we hold it.
if command -v flock >/dev/null; then
	exec 9>"$CACHE_ROOT/.build.lock"
	if ! flock -n 9; then
		log "another build is running (lock $CACHE_ROOT/.build.lock); waiting for it…"
		flock 9
	fi
	if cache_ok "$BIN_DIR"; then
		log "using cached binaries in $BIN_DIR (built by the other run)"
		echo "$BIN_DIR"
		exit 0
	fi
fi

# Everything is built under a temp dir in the cache root (same filesystem, so
# the final `mv` is an atomic rename) and removed on any exit: a killed build
# never leaves a half-filled cache entry behind.
WORK=$(mktemp -d "$CACHE_ROOT/.build-$KEY.XXXXXX")
HEARTBEAT=
cleanup() {
	if [[ -n $HEARTBEAT ]]; then kill "$HEARTBEAT" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/bin" "$WORK/k8s" "$WORK/etcd"

START=$SECONDS
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# step N TOTAL "what" "estimate" cmd...: runs cmd with a heartbeat line every
# 30 s so a 6-minute compile visibly makes progress.
step() {
	local n=$1 total=$2 what=$3 estimate=$4
	shift 4
	local t0=$SECONDS
	log "[$n/$total] $what ($estimate)…"
	# The heartbeat kills its own `sleep` when stopped, so no stray process
	# keeps our stdout/stderr open (callers pipe them, e.g. into `tail -n1`).
	(
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM
		while :; do
			sleep 30 &
			nap=$!
			wait "$nap"
			log "      … still $what ($(fmt_secs $((SECONDS - t0))) so far)"
		done
	) >&2 &
	HEARTBEAT=$!
	"$@"
	kill "$HEARTBEAT" 2>/dev/null || true
	wait "$HEARTBEAT" 2>/dev/null || true
	HEARTBEAT=
	log "[$n/$total] done in $(fmt_secs $((SECONDS - t0))) (total $(fmt_secs $((SECONDS - START))))"
}

# Static binaries, reproducible paths, no VCS stamping (the throwaway modules
# have no repository).
export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false"

log "building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $BIN_DIR"
log "$(go version); module cache $(go env GOMODCACHE)"

prepare_k8s_module() {
	local info gomod
	info=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
	gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
	[[ -f $gomod ]] || die "could not locate go.mod of k8s.io/kubernetes@$K8S_VERSION"

	# kubernetes' go.mod points its staging modules at ./staging/src/k8s.io/<name>,
	# which does not exist outside its repository. Replace each with the published
	# module of the same release, derived from that go.mod (not hand-listed) so a
	# version bump picks up added or removed staging modules automatically.
	local staging
	staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/\1[[:space:]]*$#\1#p' "$gomod")
	[[ -n $staging ]] || die "found no staging replace directives in $gomod"

	{
		echo "module dittofs.test/testenv-k8s"
		echo
		# Only the main module's go/godebug lines apply: copy kubernetes' own so
		# the binaries behave as upstream builds do.
		grep -E '^(go|godebug) ' "$gomod"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		local m
		for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
		echo ")"
	} >"$WORK/k8s/go.mod"
	# `go mod tidy` keeps only what some package imports; the build tag keeps
	# this file out of every build (the classic tools.go pattern).
	cat >"$WORK/k8s/tools.go" <<-EOF
		//go:build tools

		package tools

		import (
			_ "k8s.io/kubernetes/cmd/kube-apiserver"
			_ "k8s.io/kubernetes/cmd/kube-controller-manager"
			_ "k8s.io/kubernetes/cmd/kubectl"
		)
	EOF
	log "      $(wc -w <<<"$staging") staging modules replaced with $STAGING_VERSION"
	(cd "$WORK/k8s" && go mod tidy)

	cat >"$WORK/etcd/go.mod" <<-EOF
		module dittofs.test/testenv-etcd

		go 1.24

		require go.etcd.io/etcd/server/v3 $ETCD_VERSION
	EOF
	cat >"$WORK/etcd/tools.go" <<-EOF
		//go:build tools

		package tools

		import _ "go.etcd.io/etcd/server/v3"
	EOF
	(cd "$WORK/etcd" && go mod tidy)
}

# Without these the binaries report v0.0.0-master+$Format:%H$, which kubectl
# (and kube-rs version checks) cannot parse. Kubernetes stamps both packages.
# The module proxy knows no commit hash, so gitCommit is left empty; buildDate
# is the release's publication time, which keeps rebuilds byte-identical.
k8s_ldflags() {
	local major minor date pkg flags="-s -w"
	major=${K8S_VERSION#v}
	major=${major%%.*}
	minor=${K8S_VERSION#v"$major".}
	minor=${minor%%.*}
	date=$(go list -m -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",$/\1/p')
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
	done
	echo "$flags"
}

build_k8s() { (cd "$WORK/k8s" && go build -ldflags "$(k8s_ldflags)" -o "$WORK/bin/$1" "k8s.io/kubernetes/cmd/$1"); }
build_etcd() { (cd "$WORK/etcd" && go build -ldflags "-s -w" -o "$WORK/bin/etcd" go.etcd.io/etcd/server/v3); }

# Estimates are cold-cache figures measured on 2 cores; with a warm Go build
# cache (e.g. after a version bump of one component) steps finish much sooner.
step 1 5 "resolving Go modules" "under 1 min, mostly downloads" prepare_k8s_module
step 2 5 "building kube-apiserver" "about 6 min on 2 cores" build_k8s kube-apiserver
step 3 5 "building kube-controller-manager" "about 2 min on 2 cores" build_k8s kube-controller-manager
step 4 5 "building kubectl" "about 1 min on 2 cores" build_k8s kubectl
step 5 5 "building etcd $ETCD_VERSION" "about 1 min on 2 cores" build_etcd

cache_ok "$WORK/bin" || die "freshly built binaries do not report the pinned versions (see $WORK/bin)"

# Swap the finished bin dir into place: remove any stale/partial entry, then a
# single rename publishes all four binaries at once.
mkdir -p "$WORK/final"
mv "$WORK/bin" "$WORK/final/bin"
rm -rf "$DEST"
mv "$WORK/final" "$DEST"

etcd_version=$("$BIN_DIR/etcd" --version)
log "built in $(fmt_secs $((SECONDS - START))): $("$BIN_DIR/kube-apiserver" --version), ${etcd_version%%$'\n'*}"
echo "$BIN_DIR"
