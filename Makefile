# DittoFS auto-adapters operator. `make demo` and `make test` are the two commands a fresh machine needs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# Incremental artifacts would double the disk used by the many test binaries; CI builds from scratch anyway.
export CARGO_INCREMENTAL ?= 0

# Real Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, kubectl), helm for the chart tests
# and Jaeger for the trace test, built once from Go modules into ~/.cache/dittofs-operator/testenv/ and reused
# by every clone on this machine; PostgreSQL for the database tests, Debian's (linked when installed, else
# unpacked there from `apt-get download`).
TESTENV_BIN = $(shell scripts/testenv/build.sh --print-bin-dir)

.PHONY: help testenv build lint unit test demo bench bench-scale faults release crd clean-testenv

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

testenv: ## Build (first time, ~10 min + ~5 min each for helm and Jaeger on 2 cores; PostgreSQL seconds) or reuse the test binaries
	@scripts/testenv/build.sh >/dev/null
	@t0=$$SECONDS; scripts/testenv/helm.sh >/dev/null; echo "testenv: helm ready in $$((SECONDS - t0)) s" >&2
	@t0=$$SECONDS; scripts/testenv/jaeger.sh >/dev/null; echo "testenv: jaeger ready in $$((SECONDS - t0)) s" >&2
	@t0=$$SECONDS; scripts/testenv/slapd.sh >/dev/null; echo "testenv: slapd ready in $$((SECONDS - t0)) s" >&2
	@t0=$$SECONDS; scripts/testenv/postgres.sh >/dev/null; echo "testenv: postgres ready in $$((SECONDS - t0)) s" >&2

build: ## Build every binary of the workspace
	$(CARGO) build --workspace --bins --locked

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## Pure unit tests only (no servers)
	$(CARGO) test --workspace --locked

# Against the real DittoFS (DITTOFS_BIN set), tests named `emulator_only_…` (fault injection) cannot run; against the
# emulator, tests named `real_only_…` (LDAP against slapd, Kerberos keytabs: the emulator has neither) cannot. Each
# is filtered out, so cargo's summary counts them as skipped instead of passing unchecked.
REAL_TIER_SKIP = $(if $(DITTOFS_BIN),--skip emulator_only,--skip real_only)

# The release tier (`release_…` tests) checks what `make release` builds, a slow musl build of its own: it runs
# there, and is filtered out here (counted as such in cargo's summary).
test: testenv lint build ## Everything: lint, unit tests and the real-server tier (Kubernetes + DittoFS)
	@$(if $(DITTOFS_BIN),,echo "test: the real_only_… tests are filtered out: they need the real DittoFS (DITTOFS_BIN=/path/to/dfs)" >&2)
	DITTOFS_TESTENV_BIN="$(TESTENV_BIN)" $(CARGO) test --workspace --locked -- --include-ignored --skip release_ $(REAL_TIER_SKIP)

demo: testenv build ## Bring up Kubernetes and DittoFS locally and show them working (TRACES=1: and a trace in Jaeger)
	DITTOFS_TESTENV_BIN="$(TESTENV_BIN)" TRACES="$(TRACES)" $(CARGO) run --quiet --locked -p dittofs-tests --bin dittofs-demo

# The benches measure the agent and the controller as they ship: the static musl binaries `make release` builds
# (scripts/release/binaries.sh, which installs the musl target and musl-tools when missing), each by its own
# cargo build, so the agent does not inherit the controller's features. The harness and the emulator run from
# the debug build `make test` leaves, so no release build of them (the test harness's dependency tree, with
# thin LTO and one codegen unit) stands between a change and its figures.
MEASURED = scripts/release/binaries.sh >/dev/null && \
	$(CARGO) build --locked -p dittofs-tests -p dittofs-emulator --bins && mkdir -p target
STATIC_DIR = $(shell scripts/release/binaries.sh --print-dir)
MEASURED_ENV = DITTOFS_AGENT_BIN=$(STATIC_DIR)/dittofs-agent DITTOFS_CONTROLLER_BIN=$(STATIC_DIR)/dittofs-controller \
	DITTOFS_TESTENV_BIN="$(TESTENV_BIN)"
DEBUG_DIR = $(or $(CARGO_TARGET_DIR),target)/debug

bench: testenv ## Release agent and controller end to end: toggle latency and its stages, idle cost, requests, fast-path cost
	$(MEASURED)
	$(MEASURED_ENV) $(DEBUG_DIR)/dittofs-bench | tee target/bench-report.md

bench-scale: testenv ## Controller cost with N servers (BENCH_SCALE_N, default 100,1000): cold start, convergence, idle, toggle
	$(MEASURED)
	$(MEASURED_ENV) $(DEBUG_DIR)/dittofs-bench-scale | tee target/bench-scale-report.md

# Where cargo puts release binaries (it honours CARGO_TARGET_DIR; the report stays in ./target).
RELEASE_DIR = $(or $(CARGO_TARGET_DIR),target)/release

faults: testenv ## Fault suite on release binaries: every fault kind repeated, invariants checked (FAULTS_ROUNDS scales)
	$(CARGO) build --release --locked --bins
	@mkdir -p target
	DITTOFS_TESTENV_BIN="$(TESTENV_BIN)" $(RELEASE_DIR)/dittofs-faults | tee target/faults-report.md

# Static binaries, then images of them (buildah, no daemon), then the release tier against them. When podman
# cannot run containers on this machine, the `release_podman_…` tests are filtered out and the reason printed.
release: testenv ## Static musl binaries and OCI images in target/, tested: static, they start, image config, podman run
	@scripts/release/binaries.sh >/dev/null
	@scripts/release/images.sh >/dev/null
	@images=$$(scripts/release/images.sh --print-dir); skip=; \
	if ! reason=$$(scripts/release/podman.sh --probe "oci:$$images/dittofs-agent" 2>&1 >/dev/null); then \
		skip="--skip release_podman"; \
		echo "release: the release_podman_… tests are filtered out: $$(tail -1 <<<"$$reason")" >&2; \
	fi; \
	set -x; DITTOFS_RELEASE_BIN_DIR="$$(scripts/release/binaries.sh --print-dir)" DITTOFS_RELEASE_IMAGES_DIR="$$images" \
		DITTOFS_TESTENV_BIN="$(TESTENV_BIN)" $(CARGO) test --locked -p dittofs-tests --test release --test release_images \
		-- --include-ignored $$skip

crd: ## Regenerate deploy/crds/dittoservers.yaml from the Rust types (and the Helm chart's copy of it)
	UPDATE_CRD=1 $(CARGO) test --locked -p dittofs-api --test crd_drift
	cp deploy/crds/dittoservers.yaml deploy/helm/dittofs-operator/files/dittoservers.yaml

clean-testenv: ## Remove the cached Kubernetes binaries of this version
	rm -rf "$(dir $(TESTENV_BIN))"
