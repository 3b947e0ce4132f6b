#!/usr/bin/env bash
# Builds and runs Latchkey's fuzz targets (libFuzzer through cargo-fuzz).
#
#   fuzz/run.sh [SECONDS] [TARGET...]   run each target for SECONDS (default 60)
#   fuzz/run.sh short [TARGET...]       5 s each: what test.sh (CI) runs
#   fuzz/run.sh build                   build only
#   fuzz/run.sh cmin [TARGET...]        minimise what the runs found, merged with the
#                                       committed corpus (fuzz/corpus), and refresh it
#   fuzz/run.sh repro TARGET FILE...    run TARGET on saved inputs (a crash's artifact)
#   fuzz/run.sh list                    the targets
#
# cargo-fuzz needs nightly-only flags (-Z sanitizer, sancov); with no nightly toolchain
# at hand, RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. cargo-fuzz itself is
# installed (pinned) under the cache on first use. The build has its own target dir
# there too (sanitizer flags would otherwise rebuild the shared one), and so has the
# corpus each run grows; the committed seeds in fuzz/corpus/<target> are only read.
# fuzz/dict/<target>.dict, where there is one, is that target's libFuzzer dictionary.
# A crash's input is written to fuzz/artifacts/<target>/; the run goes on with the other
# targets and exits non-zero.
#
# Environment: LATCHKEY_CACHE_DIR (default ~/.cache/latchkey), LATCHKEY_FUZZ_SANITIZER
# (address, the default, or none for faster runs).
set -euo pipefail

FUZZ_DIR=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
CACHE=${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}
CARGO_FUZZ_VERSION=0.13.1
TOOL_ROOT=$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION
TARGET_DIR=$CACHE/fuzz/target
WORK_CORPUS=$CACHE/fuzz/corpus
SANITIZER=${LATCHKEY_FUZZ_SANITIZER:-address}
SHORT_SECONDS=5

log() { printf 'fuzz: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

ensure_cargo_fuzz() {
    if [ ! -x "$TOOL_ROOT/bin/cargo-fuzz" ]; then
        log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOL_ROOT"
        # Its own throwaway target dir: not the fuzz build's.
        env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
            --locked --root "$TOOL_ROOT" >&2
    fi
    export PATH="$TOOL_ROOT/bin:$PATH"
}

targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -vx 'latchkey-fuzz'
}

cargo_fuzz() {
    local cmd=$1
    shift
    (cd "$FUZZ_DIR" && RUSTC_BOOTSTRAP=1 cargo fuzz "$cmd" --sanitizer "$SANITIZER" \
        --target-dir "$TARGET_DIR" "$@")
}

build() {
    log "building the targets (sanitizer $SANITIZER, target dir $TARGET_DIR)"
    cargo_fuzz build
}

# The harnesses keep their key directory and SQLite file under TMPDIR: a scratch folder
# emptied before each run, so nothing piles up in /tmp.
scratch() {
    export TMPDIR=$CACHE/fuzz/tmp
    rm -rf "$TMPDIR"
    mkdir -p "$TMPDIR"
}

# run_one TARGET SECONDS: fuzz TARGET, print one summary line; non-zero on a crash.
run_one() {
    local target=$1 seconds=$2 out rc=0 execs rate corpus
    mkdir -p "$WORK_CORPUS/$target" "$FUZZ_DIR/corpus/$target"
    out=$CACHE/fuzz/$target.log
    dict=()
    [ ! -f "$FUZZ_DIR/dict/$target.dict" ] || dict=(-dict="$FUZZ_DIR/dict/$target.dict")
    # New inputs go to the first (cached) corpus folder; the committed seeds are read.
    cargo_fuzz run "$target" "$WORK_CORPUS/$target" "$FUZZ_DIR/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$out" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
    execs=${execs:-?}
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
    corpus=$(find "$WORK_CORPUS/$target" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        printf '  %-14s ok      %10s execs  %6s/s  %5s inputs in corpus\n' \
            "$target" "$execs" "$rate" "$corpus"
    else
        printf '  %-14s FAILED  %10s execs  (exit %s; log %s)\n' "$target" "$execs" "$rc" "$out"
        # The crash report: the panic, the input, how to reproduce it.
        grep -E -A3 "panicked|ERROR: libFuzzer|SUMMARY|Base64|Test unit written" "$out" |
            grep -v '^0x' | tail -40 >&2 || true
        grep -A3 "Reproduce with" "$out" >&2 || true
    fi
    return "$rc"
}

run() {
    local seconds=$1 target failed=0
    shift
    local selected=("$@")
    [ "${#selected[@]}" -gt 0 ] || mapfile -t selected < <(targets)
    build
    scratch
    log "running ${#selected[@]} targets for ${seconds}s each"
    for target in "${selected[@]}"; do
        run_one "$target" "$seconds" || failed=1
    done
    return "$failed"
}

# Minimises the cached corpus merged with the committed one. The cache keeps the whole
# minimised set; the committed folder keeps its named inputs (seed-*: fuzz/seeds/make.py,
# regression-*: past crashes) and the CMIN_KEEP smallest of the rest, so the repository
# stays small while a fresh machine still starts well past the seeds.
CMIN_KEEP=100
cmin() {
    local target tmp
    local selected=("$@")
    [ "${#selected[@]}" -gt 0 ] || mapfile -t selected < <(targets)
    build
    scratch
    for target in "${selected[@]}"; do
        tmp=$(mktemp -d)
        mkdir -p "$tmp/all" "$WORK_CORPUS/$target" "$FUZZ_DIR/corpus/$target"
        cp -n "$FUZZ_DIR/corpus/$target"/* "$WORK_CORPUS/$target"/* "$tmp/all/" 2>/dev/null || true
        cargo_fuzz cmin "$target" "$tmp/all" >"$CACHE/fuzz/$target.cmin.log" 2>&1
        rm -rf "${WORK_CORPUS:?}/$target"
        mv "$tmp/all" "$WORK_CORPUS/$target"
        find "$FUZZ_DIR/corpus/$target" -type f ! -name 'seed-*' ! -name 'regression-*' -delete
        (cd "$WORK_CORPUS/$target" && find . -type f -printf '%s %f\n' | sort -n |
            awk -v keep="$CMIN_KEEP" 'NR <= keep { print $2 }' |
            xargs -r cp -t "$FUZZ_DIR/corpus/$target/")
        rm -rf "$tmp"
        printf '  %-14s %5s inputs minimised (cache), %4s committed, %s\n' "$target" \
            "$(find "$WORK_CORPUS/$target" -type f | wc -l)" \
            "$(find "$FUZZ_DIR/corpus/$target" -type f | wc -l)" \
            "$(du -s --apparent-size --block-size=1K "$FUZZ_DIR/corpus/$target" | cut -f1)K"
    done
}

mkdir -p "$CACHE/fuzz"
case "${1:-60}" in
    list) targets ;;
    build) ensure_cargo_fuzz && build ;;
    cmin) shift && ensure_cargo_fuzz && cmin "$@" ;;
    short) shift && ensure_cargo_fuzz && run "$SHORT_SECONDS" "$@" ;;
    repro)
        [ "$#" -ge 3 ] || { log "usage: fuzz/run.sh repro TARGET FILE..." && exit 2; }
        ensure_cargo_fuzz && scratch
        target=$2
        shift 2
        files=()
        for f in "$@"; do files+=("$(cd -P -- "$(dirname -- "$f")" && pwd)/$(basename -- "$f")"); done
        cargo_fuzz run "$target" "${files[@]}"
        ;;
    *[!0-9]*)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
    *)
        seconds=${1:-60}
        [ "$#" -gt 0 ] && shift
        ensure_cargo_fuzz && run "$seconds" "$@"
        ;;
esac
