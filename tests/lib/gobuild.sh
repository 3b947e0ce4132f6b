# shellcheck shell=bash
# Shared by tests/controlplane/build.sh and tests/helm/build.sh: build Go binaries
# into a cache that every clone of the repository reuses, skipping the build when the
# cached binaries match a stamp of their inputs. Sourced, never run.
#
# Before sourcing, the caller sets:
#   GB_NAME     prefix of log lines (e.g. "helm/build.sh")
#   GB_OUT_DIR  cache directory of this build (binaries in $GB_OUT_DIR/bin)
#   GB_FORCE    1 to rebuild even when the stamp matches
# and defines `gb_complete DIR`, which succeeds when DIR holds every artefact.
# Then: `gb_stamp FILE...` (the build's inputs; this file is always included),
# `gb_exit_if_cached`, `gb_setup_go`, `gb_tmp_bin` (sets GB_TMP_BIN), build into
# $GB_TMP_BIN, and `gb_install`. Progress goes to stderr; the only stdout line is the
# bin dir.

log() { printf '%s: %s\n' "$GB_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap
trap 'rc=$?; log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"; exit $rc' ERR

GB_CACHE_ROOT=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}
GB_BIN_DIR=$GB_OUT_DIR/bin
GB_STAMP_FILE=$GB_OUT_DIR/stamp

gb_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
  else shasum -a 256 | cut -d' ' -f1
  fi
}

# The stamp: file contents only (no paths), so every clone computes the same one.
gb_stamp() {
  GB_STAMP=$(cat "$@" "${BASH_SOURCE[0]}" | gb_sha256)
}

gb_up_to_date() {
  [[ "${GB_FORCE:-0}" != 1 ]] || return 1
  [[ -f "$GB_STAMP_FILE" && "$(cat "$GB_STAMP_FILE")" == "$GB_STAMP" ]] || return 1
  gb_complete "$GB_BIN_DIR"
}

# Prints the bin dir and exits when the cache is current; otherwise takes the build
# lock (flock, when installed: concurrent runs build once) and returns.
gb_exit_if_cached() {
  if gb_up_to_date; then
    log "cached: $GB_BIN_DIR (stamp ${GB_STAMP:0:12})"
    printf '%s\n' "$GB_BIN_DIR"
    exit 0
  fi
  mkdir -p "$GB_OUT_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$GB_OUT_DIR/.lock"
    log "waiting for build lock $GB_OUT_DIR/.lock"
    flock 9
    if gb_up_to_date; then
      log "cached: $GB_BIN_DIR (built by a concurrent run)"
      printf '%s\n' "$GB_BIN_DIR"
      exit 0
    fi
  fi
}

# GO (go on PATH, else /usr/local/go/bin/go, unless set) and a reproducible,
# module-pinned, static build environment with the shared caches.
gb_setup_go() {
  if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO=go
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else die "no 'go' on PATH and no /usr/local/go/bin/go; install Go >= 1.25 or set GO="
    fi
  fi
  export GOMODCACHE=$GB_CACHE_ROOT/go/mod
  export GOCACHE=$GB_CACHE_ROOT/go/build
  export CGO_ENABLED=0
  export GOWORK=off             # never pick up a go.work from a parent directory
  export GOFLAGS=-mod=readonly  # build exactly what go.mod/go.sum pin
  unset GOOS GOARCH GOBIN
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  log "using $("$GO" version) (GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE)"
}

# A fresh directory to build into, removed on exit unless installed.
gb_tmp_bin() {
  GB_TMP_BIN=$(mktemp -d "$GB_OUT_DIR/bin.tmp.XXXXXX")
  trap 'rm -rf "$GB_TMP_BIN"' EXIT
  chmod 755 "$GB_TMP_BIN"
}

# Swaps the new binaries in, records the stamp, prints the bin dir.
gb_install() {
  rm -rf "$GB_BIN_DIR"
  mv "$GB_TMP_BIN" "$GB_BIN_DIR"
  printf '%s\n' "$GB_STAMP" > "$GB_STAMP_FILE"
  log "built in ${SECONDS}s: $GB_BIN_DIR"
  printf '%s\n' "$GB_BIN_DIR"
}
