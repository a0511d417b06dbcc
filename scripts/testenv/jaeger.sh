#!/usr/bin/env bash
# Builds Jaeger (all-in-one: OTLP receiver, in-memory storage, query API) — the
# real trace backend the trace test and `make demo TRACES=1` export to — from the
# Go module proxy into the same per-version cache as build.sh:
#
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/jaeger-<version>/bin/jaeger
#
# Usage:
#   scripts/testenv/jaeger.sh                  build if needed; last stdout line = bin dir
#   scripts/testenv/jaeger.sh --print-bin-dir  print the bin dir only (no check, no build)
#   scripts/testenv/jaeger.sh --help
#
# All progress goes to stderr; stdout carries only the bin dir. The tests find
# jaeger through `--print-bin-dir` (or $DITTOFS_JAEGER_BIN, a jaeger binary elsewhere).
set -euo pipefail

TOOL=jaeger
# github.com/jaegertracing/jaeger on the Go module proxy (v2 is cmd/jaeger of the v1.x module tags).
TOOL_VERSION=v1.76.0
HELP_LINES=2,14
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# Jaeger's `version` subcommand prints JSON holding "gitVersion" (set below from TOOL_VERSION).
tool_ok() {
	local out
	[[ -x $1/jaeger ]] || return 1
	out=$("$1/jaeger" version 2>&1) && [[ $out == *"\"$TOOL_VERSION\""* ]]
}

tool_build() {
	log "building jaeger $TOOL_VERSION (about 5 min on 2 cores with cold Go caches, once)"
	local src pkg=github.com/jaegertracing/jaeger/internal/version flags
	src=$(go_module_dir github.com/jaegertracing/jaeger "$TOOL_VERSION")
	# Built inside the downloaded module (read-only; go only reads it) so its go.mod, go.sum and its
	# `replace` line apply — `go install pkg@version` refuses a module with replace directives.
	flags="-s -w -X $pkg.latestVersion=$TOOL_VERSION -X $pkg.commitSHA=proxy -X $pkg.date=unknown"
	(cd "$src" && go build -ldflags "$flags" -o "$1/jaeger" ./cmd/jaeger)
}

tool_main "$@"
