#!/usr/bin/env bash
# podman as the release tests run it: rootful, no daemon, its own storage (vfs) under
# ${CARGO_TARGET_DIR:-target}/images/.podman, and the settings this kind of sandbox needs:
#
#   - runc when installed: crun 1.8 (Debian 12's) refuses a cgroup v1 host that also mounts
#     cgroup2 at /sys/fs/cgroup/unified with a controller ("cgroups in hybrid mode not supported");
#   - --ulimit nofile and nproc below the host's hard limits: rootful podman asks for 1048576
#     open files, and without CAP_SYS_RESOURCE the runtime's setrlimit is refused (EPERM);
#   - cgroupfs and file events: there is no systemd.
#
# Usage:
#   scripts/release/podman.sh ARGS…          podman ARGS… with the settings above (`run` gets the ulimits)
#   scripts/release/podman.sh --probe IMAGE  install podman (and runc) if missing, then run IMAGE (e.g.
#                                            oci-archive:target/images/amd64/dittofs-agent.tar) with
#                                            --version; exit 0 if it ran, else 1 with the reason last on stderr
set -euo pipefail

log() { printf 'podman: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STORE=${DITTOFS_PODMAN_STORE:-${CARGO_TARGET_DIR:-$ROOT/target}/images/.podman}

GLOBAL=(--root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
command -v runc >/dev/null && GLOBAL+=(--runtime runc)
RUN=(--ulimit nofile=4096:4096 --ulimit nproc=1024:1024)

case ${1:-} in
	"") die "no podman command given (try --help)" ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
esac

if [[ $1 == --probe ]]; then
	image=${2:?usage: podman.sh --probe IMAGE}
	missing=()
	command -v podman >/dev/null || missing+=(podman)
	command -v runc >/dev/null || missing+=(runc)
	if ((${#missing[@]})); then
		if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
			log "installing ${missing[*]} (apt-get), to run the images…"
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
				|| die "apt-get install ${missing[*]} failed"
			command -v runc >/dev/null && GLOBAL+=(--runtime runc)
		fi
		command -v podman >/dev/null || die "podman is not installed (and cannot be installed here as non-root)"
	fi
	mkdir -p "$STORE"
	if ! out=$(podman "${GLOBAL[@]}" run --quiet --rm --network host "${RUN[@]}" "$image" --version 2>&1); then
		log "podman run $image --version failed:"
		printf '%s\n' "$out" >&2
		die "podman cannot run containers here: $(tail -1 <<<"$out")"
	fi
	log "podman runs containers here: $out"
	exit 0
fi

mkdir -p "$STORE"
if [[ ${1:-} == run ]]; then
	shift
	exec podman "${GLOBAL[@]}" run "${RUN[@]}" "$@"
fi
exec podman "${GLOBAL[@]}" "$@"
