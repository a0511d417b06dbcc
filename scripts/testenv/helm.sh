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

TOOL=helm
# helm.sh/helm/v3 on the Go module proxy (`go list -m -versions helm.sh/helm/v3`).
TOOL_VERSION=v3.22.0
HELP_LINES=2,13
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# `helm version --short` prints e.g. v3.22.0+g (no commit: the proxy knows none).
tool_ok() {
	local out
	[[ -x $1/helm ]] || return 1
	# Captured, not piped into grep -q (see build.sh: SIGPIPE under pipefail).
	out=$("$1/helm" version --short 2>&1) && [[ $out == "$TOOL_VERSION"* ]]
}

tool_build() {
	log "building helm $TOOL_VERSION (about 5 min on 2 cores with cold Go caches, once)"
	local src gomod client_go flags pkg
	src=$(go_module_dir helm.sh/helm/v3 "$TOOL_VERSION")
	gomod="$src/go.mod"
	# As helm's own Makefile does: the version, and the Kubernetes version its
	# client-go is from (v0.N.x → 1.N). Without the latter `helm template` and
	# `helm lint` assume Kubernetes 1.20 and refuse a chart asking for more.
	client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go[[:space:]]\{1,\}v0\.\([0-9]\{1,\}\)\..*#\1#p' "$gomod")
	[[ -n $client_go ]] || die "found no k8s.io/client-go requirement in $gomod"
	flags="-s -w -X helm.sh/helm/v3/internal/version.version=$TOOL_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go"
	done
	# `go install pkg@version` builds with helm's own go.mod and go.sum: exactly
	# the dependency versions upstream releases use, no throwaway module needed.
	GOBIN="$1" go install -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$TOOL_VERSION"
}

tool_main "$@"
