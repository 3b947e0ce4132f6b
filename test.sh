#!/usr/bin/env bash
# Run Latchkey's whole test suite on a fresh machine: installs what is missing,
# builds (cached) the Go-built control plane, helm, the test node's components and the
# OCI images, starts a throwaway PostgreSQL + Redis, then runs fmt, clippy and the
# tests; the node test starts a real single-node cluster itself (tests/cluster/up.sh,
# root needed). Caches live in ${LATCHKEY_CACHE_DIR:-~/.cache/latchkey}.
#
#   ./test.sh                      everything (what CI runs via .ci/run)
#   ./test.sh login                extra args go to `cargo test` (a name filter here)
#   ./test.sh -- --nocapture       ... or to the test binaries
#   LATCHKEY_TEST_SKIP_LINT=1 ./test.sh   skip fmt, clippy and the module-cycle check (local iteration only)
#   LATCHKEY_TEST_SKIP_FUZZ=1 ./test.sh   skip the short fuzz run (fuzz/run.sh short; also skipped when args are given)
#
# Works from any cwd. Exits non-zero if any step fails.
set -euo pipefail

REPO_ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cd "$REPO_ROOT"

# shellcheck source=tests/scripts/services.sh
source "$REPO_ROOT/tests/scripts/services.sh"

# A shared target dir outside the checkout: CI runs in a fresh clone in another
# folder on the same machine, and this lets it reuse the dependencies compiled
# by earlier runs instead of building everything from scratch each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-$([ -t 1 ] && echo auto || echo never)}"
# Full backtraces make failures in CI logs readable.
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# Services are stopped on any exit; signals are turned into exits so the EXIT
# trap also runs on Ctrl-C / SIGTERM.
trap 'latchkey_services_stop' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

STEP_NAMES=()
STEP_RESULTS=()
FAILED=0

# step NAME CMD...: run CMD with a banner and its wall time; record the result.
step() {
    local name=$1 start end rc
    shift
    printf '\n==> [%s] %s\n' "$name" "$*"
    start=$(date +%s)
    rc=0
    "$@" || rc=$?
    end=$(date +%s)
    if [ "$rc" -eq 0 ]; then
        printf '<== [%s] ok (%ss)\n' "$name" "$((end - start))"
        STEP_RESULTS+=("ok      $((end - start))s")
    else
        printf '<== [%s] FAILED with exit code %s (%ss)\n' "$name" "$rc" "$((end - start))"
        STEP_RESULTS+=("FAILED  $((end - start))s")
        FAILED=1
    fi
    STEP_NAMES+=("$name")
    return "$rc"
}

summary() {
    local i
    printf '\n==== summary\n'
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-10s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}"
    done
    printf '  %-10s %ss\n' total "$SECONDS"
}

ensure_tools() {
    latchkey_services_install && latchkey_ensure_rust_tools && ensure_schemathesis
}

# The pinned Schemathesis of service/tests/schemathesis.rs, in its own venv under the
# cache dir (the test runs the same script, a no-op once installed).
ensure_schemathesis() {
    local st
    st=$("$REPO_ROOT/tests/scripts/schemathesis.sh" | tail -1) || return 1
    printf '  schemathesis: %s\n' "$st"
}

# The real etcd + kube-apiserver + kubectl of the operator tests, built from Go modules
# and cached (tests/controlplane/README.md): minutes the first time, ~0 s afterwards.
build_controlplane() {
    local bin
    bin=$(nice -n 19 "$REPO_ROOT/tests/controlplane/build.sh" | tail -1) || return 1
    export LATCHKEY_TEST_K8S_BIN_DIR="$bin"
    printf '  control plane binaries in %s\n' "$LATCHKEY_TEST_K8S_BIN_DIR"
}

# The real helm CLI of the chart tests, built from its Go module and cached the same way.
build_helm() {
    local bin
    bin=$(nice -n 19 "$REPO_ROOT/tests/helm/build.sh" | tail -1) || return 1
    export LATCHKEY_TEST_HELM_BIN_DIR="$bin"
    printf '  helm in %s\n' "$LATCHKEY_TEST_HELM_BIN_DIR"
}

# The node of the real-cluster tests (kubelet, kube-proxy, controller-manager, scheduler,
# CoreDNS), built from Go modules and cached like the control plane; tests/cluster/up.sh
# starts it from the node test itself.
build_cluster() {
    nice -n 19 "$REPO_ROOT/tests/cluster/build.sh" | tail -1 >/dev/null
}

# The OCI image archives of docker/build-images.sh, for testkit/tests/images.rs and the
# node test (which imports them into the node's containerd): a static musl release build
# the first time (8 min on 2 idle cores, 48 on busy ones), ~0 s while their inputs hold.
build_images() {
    local last
    last=$(nice -n 19 "$REPO_ROOT/docker/build-images.sh" | tail -1) || return 1
    LATCHKEY_TEST_IMAGES_DIR=$(dirname -- "$(printf '%s\n' "$last" | cut -d' ' -f3-)")
    export LATCHKEY_TEST_IMAGES_DIR
    export LATCHKEY_CLUSTER_IMAGES="$LATCHKEY_TEST_IMAGES_DIR/images.txt"
    printf '  image archives in %s\n' "$LATCHKEY_TEST_IMAGES_DIR"
}

start_services() {
    # Never reuse services exported into the caller's shell by a standalone
    # `services.sh start`: this run starts (and stops) its own.
    unset LATCHKEY_TEST_RUN_DIR LATCHKEY_TEST_DATABASE_URL LATCHKEY_TEST_REDIS_URL
    latchkey_services_start "$$"
}

printf '==== Latchkey test suite\n'
printf '  repo        %s (%s)\n' "$REPO_ROOT" "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
printf '  target dir  %s\n' "$CARGO_TARGET_DIR"
printf '  ci          %s\n' "${CI:-false}"
if [ "${LATCHKEY_TEST_SKIP_LINT:-}" = 1 ]; then
    printf '  lint        skipped (LATCHKEY_TEST_SKIP_LINT=1)\n'
fi

# Setup failures are fatal: nothing after them can run meaningfully.
if ! step tools ensure_tools; then
    summary
    exit 1
fi
printf '  %s, %s\n' "$(cargo --version)" "$(rustc --version)"
if ! step k8s build_controlplane; then
    summary
    exit 1
fi
if ! step helm build_helm; then
    summary
    exit 1
fi
# The module graph of each crate has no cycle (the layering the README describes).
check_module_cycles() {
    local crate ok=0
    for crate in service domain store operator; do
        if ! python3 tests/scripts/modgraph.py "$crate" >/dev/null; then
            printf 'module cycle in %s:\n' "$crate" >&2
            python3 tests/scripts/modgraph.py "$crate" | sed -n '/^cycles/,$p' >&2
            ok=1
        fi
    done
    return "$ok"
}

if ! step cluster build_cluster; then
    summary
    exit 1
fi
if ! step images build_images; then
    summary
    exit 1
fi
if ! step services start_services; then
    summary
    exit 1
fi

# Lint and test steps all run even if an earlier one failed, so one CI run
# shows every problem; the exit code still reports the failure.
if [ "${LATCHKEY_TEST_SKIP_LINT:-}" != 1 ]; then
    step fmt cargo fmt --all --check || true
    step clippy cargo clippy --workspace --all-targets --locked -- -D warnings || true
    step modules check_module_cycles || true
fi
# --no-fail-fast: one run shows every failing test binary, not only the first.
step test cargo test --workspace --locked --no-fail-fast "$@" || true
# Every fuzz target for a few seconds (fuzz/run.sh: cargo-fuzz installed and the build
# cached under the cache dir, apart from the tests' target dir). Not on a filtered run.
if [ "$#" -eq 0 ] && [ "${LATCHKEY_TEST_SKIP_FUZZ:-}" != 1 ]; then
    step fuzz fuzz/run.sh short || true
fi

summary
if [ "$FAILED" -ne 0 ]; then
    printf '\nFAILED\n'
    exit 1
fi
printf '\nALL PASSED\n'
