# shellcheck shell=bash
# Sourced by helm.sh and jaeger.sh: what every single-binary tool built from the Go module proxy shares —
# the per-version cache layout, the lock, the heartbeat, the atomic publish and the CLI.
#
# The caller sets TOOL (its name, e.g. helm), TOOL_VERSION and HELP_LINES (the sed range of its usage
# comment), defines
#   tool_ok DIR     true when DIR holds a working binary of TOOL_VERSION
#   tool_build DIR  builds the binary into DIR (progress on stderr)
# and ends with `tool_main "$@"`. The binary lands in
#   ${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/$TOOL-$TOOL_VERSION/bin
# and the last stdout line is that directory; all progress goes to stderr.

CACHE_ROOT=${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}

log() { printf 'testenv(%s): %s\n' "$TOOL" "$*" >&2; }
die() { log "error: $*"; exit 1; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tool_main() {
	local key="$TOOL-$TOOL_VERSION"
	local dest="$CACHE_ROOT/$key"
	BIN_DIR="$dest/bin"
	case "${1:-}" in
		--print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
		-h | --help) sed -n "${HELP_LINES}p" "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
		"") ;;
		*) die "unknown argument '$1' (try --help)" ;;
	esac

	if tool_ok "$BIN_DIR"; then
		log "using cached $TOOL in $BIN_DIR"
		echo "$BIN_DIR"
		exit 0
	fi
	command -v go >/dev/null || die "Go is required to build $TOOL (https://go.dev/dl/)"
	mkdir -p "$CACHE_ROOT"

	# A lock per tool, so one build never waits for (or blocks) another; re-checked once held.
	if command -v flock >/dev/null; then
		exec 9>"$CACHE_ROOT/.build-$TOOL.lock"
		if ! flock -n 9; then
			log "another $TOOL build is running (lock $CACHE_ROOT/.build-$TOOL.lock); waiting for it…"
			flock 9
		fi
		if tool_ok "$BIN_DIR"; then
			log "using cached $TOOL in $BIN_DIR (built by the other run)"
			echo "$BIN_DIR"
			exit 0
		fi
	fi

	# Built under a temp dir on the same filesystem, published by one rename: a half-built tool is never seen.
	WORK=$(mktemp -d "$CACHE_ROOT/.build-$key.XXXXXX")
	HEARTBEAT=
	trap 'tool_cleanup' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$WORK/bin"
	START=$SECONDS
	export CGO_ENABLED=0
	export GOFLAGS="-trimpath -buildvcs=false"
	log "$(go version); module cache $(go env GOMODCACHE)"

	# A heartbeat every 30 s so a long compile visibly makes progress; it kills its own sleep when stopped.
	(
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM
		while :; do
			sleep 30 &
			nap=$!
			wait "$nap"
			log "      … still building $TOOL ($(fmt_secs $((SECONDS - START))) so far)"
		done
	) >&2 &
	HEARTBEAT=$!
	tool_build "$WORK/bin"
	kill "$HEARTBEAT" 2>/dev/null || true
	wait "$HEARTBEAT" 2>/dev/null || true
	HEARTBEAT=

	tool_ok "$WORK/bin" || die "the freshly built $TOOL does not work or is not $TOOL_VERSION (see $WORK/bin)"
	mkdir -p "$WORK/final"
	mv "$WORK/bin" "$WORK/final/bin"
	rm -rf "$dest"
	mv "$WORK/final" "$dest"
	log "built $TOOL $TOOL_VERSION in $(fmt_secs $((SECONDS - START))) into $BIN_DIR"
	echo "$BIN_DIR"
}

tool_cleanup() {
	if [[ -n ${HEARTBEAT:-} ]]; then kill "$HEARTBEAT" 2>/dev/null || true; fi
	rm -rf "$WORK"
}

# go_module_dir MODULE VERSION: downloads the module (with its go.mod and go.sum) and prints its directory.
go_module_dir() {
	local info dir
	info=$(go mod download -json "$1@$2") || die "cannot download $1@$2 from the Go module proxy"
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
	[[ -d $dir ]] || die "could not locate the source of $1@$2"
	echo "$dir"
}
