#!/usr/bin/env bash
# The pruning benchmark of issue 15 ("Storage stays bounded"): does the pruner drain a
# large backlog of expired refresh tokens beside live traffic without hurting it?
#
#   bench/prune.sh       # about 5 minutes on 2 cores once built (the first build: 17)
#
# A benchmark, not a test: it prints numbers and never fails on them (only when
# something does not work: a non-200 answer, a backlog that stays). Not run by
# ./test.sh or CI.
#
# What it does:
#   1. Installs wrk if missing (apt-get) and starts its own PostgreSQL and Redis on
#      loopback with tests/scripts/services.sh (which installs them if missing and
#      removes them at the end). That PostgreSQL runs with fsync=off and
#      synchronous_commit=off, like the test suite's.
#   2. Builds the service in release (cargo build --release -p latchkey) into
#      ~/.cache/latchkey/bench-target/<checkout> (BENCH_TARGET_DIR), kept between runs.
#   3. Makes a template database: the migrations (`latchkey migrate`), a confidential
#      client `bench` with client_credentials and refresh_token (`latchkey client
#      create`), 50,000 users and the backlog (bench/prune/fill.sql): 1,000,000
#      refresh tokens the pruner deletes (200,000 ended families of 5) and 100,000 it
#      keeps (20,000 live families of 5, some of whose first tokens have expired),
#      digests of random values in the order real sessions write them; VACUUM ANALYZE.
#   4. Run B, pruner on (LATCHKEY_PRUNE_INTERVAL=1s, so it starts at once, default
#      batch), then run A, pruner off (LATCHKEY_PRUNE_INTERVAL=off), each on a fresh
#      copy of the template (so both start from the same backlog), the service in
#      release with rate limits off, PostgreSQL and Redis. Each run loads
#      /oauth/token with two wrk processes at once, keep-alive:
#        client_credentials  2 threads, 16 connections (bench/prune/client_credentials.lua)
#        refresh_token       4 threads, 1 connection each, every thread following one
#                            live session from answer to answer (bench/prune/refresh.lua):
#                            the load that writes the pruned table.
#      Run B lasts until latchkey_pruned_rows_total{table="refresh_tokens"} reaches
#      1,000,000 (the backlog is gone; given up after BENCH_MAX_DRAIN seconds); run A
#      lasts as long.
#   5. Prints per run and load: req/s, p50, p90, p99, max, non-200 answers; the rows
#      left, when (autovacuum) vacuumed refresh_tokens, the time to drain,
#      p99(B)/p99(A); the machine and its load (it may be shared: the load average and
#      the compilers running are logged before and after each run).
#
# wrk is closed-loop: each connection sends its next request when the answer comes, so
# the two loads keep both cores busy and the ratio is what the pruner (and the vacuum
# its deletes call for) costs a saturated machine: the worst case.
#
# The goal (issue 15): p99 of run B within 1.5x of run A's, backlog gone in under
# 10 minutes.
#
# Knobs (environment): BENCH_EXPIRED (1000000), BENCH_LIVE (100000), BENCH_USERS
# (50000), BENCH_PRUNE_BATCH (the service's default, 1000), BENCH_MAX_DRAIN (600),
# BENCH_CC_THREADS (2), BENCH_CC_CONNECTIONS (16), BENCH_REFRESH_SESSIONS (4, 0 for no
# refresh load), BENCH_TARGET_DIR, BENCH_BIN (a latchkey binary to measure instead of
# building this checkout: to compare two builds), BENCH_KEEP (1: leave the run dir
# with the service's logs, the wrk outputs and each run's timeline: second, rows
# pruned, vacuum phase, load).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXPIRED=${BENCH_EXPIRED:-1000000}
LIVE=${BENCH_LIVE:-100000}
USERS=${BENCH_USERS:-50000}
PER_FAMILY=5
BATCH=${BENCH_PRUNE_BATCH:-1000}
MAX_DRAIN=${BENCH_MAX_DRAIN:-600}
CC_THREADS=${BENCH_CC_THREADS:-2}
CC_CONNECTIONS=${BENCH_CC_CONNECTIONS:-16}
SESSIONS=${BENCH_REFRESH_SESSIONS:-4}
TTL_MS=$((14 * 86400 * 1000)) # the service's default refresh-token lifetime
TARGET=${BENCH_TARGET_DIR:-$HOME/.cache/latchkey/bench-target/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}
[ $((EXPIRED % PER_FAMILY)) = 0 ] && [ $((LIVE % PER_FAMILY)) = 0 ] ||
    die "BENCH_EXPIRED and BENCH_LIVE must be multiples of $PER_FAMILY (tokens per family)"

# --- 1. tools and services ---------------------------------------------------------

if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
for tool in curl jq; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# shellcheck source=../tests/scripts/services.sh
source "$ROOT/tests/scripts/services.sh"
SERVICE_PID=
SAMPLER_PID=
WRK_PIDS=()
cleanup() {
    local pid
    for pid in "${WRK_PIDS[@]}" $SAMPLER_PID $SERVICE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    [ -n "$SERVICE_PID" ] && wait "$SERVICE_PID" 2>/dev/null || true
    if [ "${BENCH_KEEP:-0}" = 1 ] && [ -n "${RUN:-}" ]; then
        log "kept $RUN"
    else
        [ -n "${RUN:-}" ] && rm -rf "$RUN"
    fi
    latchkey_services_stop
}
trap cleanup EXIT
latchkey_services_install
latchkey_services_start
RUN=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench-XXXXXXXX")
SERVER=${LATCHKEY_TEST_DATABASE_URL%/postgres}
export PGOPTIONS="-c client_min_messages=warning"
psql_on() {
    local db=$1
    shift
    psql "$SERVER/$db" -X -q -v ON_ERROR_STOP=1 "$@"
}

# --- 2. build -----------------------------------------------------------------------

if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
    log "measuring $BIN (BENCH_BIN), not building"
else
    log "building the service (release) into $TARGET"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --release --locked -p latchkey 2>"$RUN/build.log") ||
        {
            tail -n 30 "$RUN/build.log" >&2
            die "the build failed"
        }
    BIN=$TARGET/release/latchkey
fi

# --- 3. the template database -------------------------------------------------------

log "template database: migrations, client, $EXPIRED expired and $LIVE live refresh tokens"
psql_on postgres -c 'CREATE DATABASE bench_template'
export LATCHKEY_DATA_DIR=$RUN/data
DATABASE_URL=$SERVER/bench_template "$BIN" migrate >/dev/null
SECRET=$(DATABASE_URL=$SERVER/bench_template "$BIN" client create --output json \
    --client-id bench --name bench --scope api.read \
    --grant-type client_credentials --grant-type refresh_token | jq -er .client_secret)
BENCH_BASIC="Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"
export BENCH_BASIC
export BENCH_SESSIONS=$RUN/sessions
FILL_START=$(date +%s)
psql_on bench_template -At -f "$ROOT/bench/prune/fill.sql" \
    -v now="$(date +%s%3N)" -v client=bench -v users="$USERS" \
    -v dead_families=$((EXPIRED / PER_FAMILY)) -v live_families=$((LIVE / PER_FAMILY)) \
    -v per_family=$PER_FAMILY -v ttl=$TTL_MS -v sessions="$SESSIONS" \
    -v sessions_file="$BENCH_SESSIONS"
psql_on bench_template -c 'VACUUM ANALYZE'
[ "$(grep -c . "$BENCH_SESSIONS" || true)" -ge "$SESSIONS" ] || die "too few live sessions for the refresh load"
log "filled in $(($(date +%s) - FILL_START)) s; refresh_tokens is $(psql_on bench_template -At -c \
    "SELECT pg_size_pretty(pg_total_relation_size('refresh_tokens'))") with its indexes"

# --- 4. the runs --------------------------------------------------------------------

# Rows store::prune would delete now (the backlog).
PRUNABLE="SELECT count(*) FROM refresh_tokens r WHERE r.expires_at < (extract(epoch FROM now()) * 1000)::bigint
    AND NOT EXISTS (SELECT 1 FROM refresh_tokens l WHERE l.family_id = r.family_id
                    AND l.expires_at >= (extract(epoch FROM now()) * 1000)::bigint)"

machine_load() {
    printf 'load average %s; compilers running: %s' \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|compile|go|ld|lld|clang)$' || true)"
}

# Every second while a run lasts: seconds since the service started, rows pruned, the
# phase of a vacuum of refresh_tokens in progress (- for none), the 1-minute load.
sample() {
    local start=$1 phase rows
    while :; do
        phase=$(psql_on bench_run -At -c "SELECT coalesce(max(phase), '-') FROM pg_stat_progress_vacuum
            WHERE relid = 'refresh_tokens'::regclass" 2>/dev/null) || phase='?'
        rows=$(pruned_rows 2>/dev/null) || rows='?'
        printf '%s %s %s %s\n' "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')" \
            "$rows" "${phase// /_}" "$(cut -d' ' -f1 /proc/loadavg)"
        sleep 1
    done
}

# The seconds of a timeline during which refresh_tokens was being vacuumed, as ranges.
vacuumed() {
    awk '$3 != "-" && $3 != "?" { if (!on) { from = $1; on = 1 } last = $1; next }
         on { printf "%s%s-%s s", sep, from, last; sep = ", "; on = 0 }
         END { if (on) printf "%s%s-%s s", sep, from, last; if (!sep && !on) printf "none" }' "$1"
}

pruned_rows() {
    curl -fsS "http://$METRICS/metrics" |
        awk '/^latchkey_pruned_rows_total\{table="refresh_tokens"\}/ { print $2; found = 1 } END { if (!found) print 0 }'
}

# run NAME PRUNE_INTERVAL DURATION: DURATION seconds, or "drain" (until the backlog is
# gone). Leaves $RUN/NAME.{cc,refresh} (wrk's outputs) and $RUN/NAME.result.
run() {
    local name=$1 interval=$2 duration=$3 port mport start drained= elapsed pid wrk_duration
    log "run $name (LATCHKEY_PRUNE_INTERVAL=$interval): $(machine_load)"
    psql_on postgres -c 'DROP DATABASE IF EXISTS bench_run' \
        -c 'CREATE DATABASE bench_run TEMPLATE bench_template STRATEGY FILE_COPY'
    port=$(_lk_free_port)
    mport=$(_lk_free_port)
    METRICS=127.0.0.1:$mport
    start=$(date +%s.%N)
    env DATABASE_URL="$SERVER/bench_run" REDIS_URL="$LATCHKEY_TEST_REDIS_URL" \
        LATCHKEY_LISTEN=127.0.0.1:$port LATCHKEY_METRICS_LISTEN="$METRICS" \
        LATCHKEY_ISSUER=http://127.0.0.1:$port \
        LATCHKEY_PRUNE_INTERVAL="$interval" LATCHKEY_PRUNE_BATCH="$BATCH" \
        RATE_LIMITING_DEFAULT=off RATE_LIMITING_CLIENT=off RATE_LIMITING_ROUTES= \
        "$BIN" serve >"$RUN/$name.service.log" 2>&1 &
    SERVICE_PID=$!
    sample "$start" >"$RUN/$name.timeline" &
    SAMPLER_PID=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null; do
        kill -0 "$SERVICE_PID" 2>/dev/null || {
            tail -n 20 "$RUN/$name.service.log" >&2
            die "the service did not start"
        }
        sleep 0.1
    done

    wrk_duration=$duration
    [ "$duration" = drain ] && wrk_duration=$MAX_DRAIN
    WRK_PIDS=()
    wrk -t "$CC_THREADS" -c "$CC_CONNECTIONS" -d "${wrk_duration}s" --timeout 10s --latency \
        -s "$ROOT/bench/prune/client_credentials.lua" "http://127.0.0.1:$port" \
        >"$RUN/$name.cc" 2>&1 &
    WRK_PIDS+=($!)
    if [ "$SESSIONS" -gt 0 ]; then
        wrk -t "$SESSIONS" -c "$SESSIONS" -d "${wrk_duration}s" --timeout 10s --latency \
            -s "$ROOT/bench/prune/refresh.lua" "http://127.0.0.1:$port" \
            >"$RUN/$name.refresh" 2>&1 &
        WRK_PIDS+=($!)
    fi

    if [ "$duration" = drain ]; then
        # Cheap to poll: the metrics listener, not a count(*) on the table.
        while kill -0 "${WRK_PIDS[0]}" 2>/dev/null; do
            if [ "$(pruned_rows)" -ge "$EXPIRED" ]; then
                drained=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
                break
            fi
            sleep 0.5
        done
        # wrk stops on SIGINT and prints its results for the time it ran.
        for pid in "${WRK_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    fi
    for pid in "${WRK_PIDS[@]}"; do wait "$pid" || true; done
    WRK_PIDS=()
    kill "$SAMPLER_PID"
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    elapsed=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$RUN/$name.cc")

    kill -TERM "$SERVICE_PID"
    wait "$SERVICE_PID" || true
    SERVICE_PID=
    {
        echo "rows_left=$(psql_on bench_run -At -c 'SELECT count(*) FROM refresh_tokens')"
        echo "prunable_left=$(psql_on bench_run -At -c "$PRUNABLE")"
        echo "drained=${drained:-}"
        echo "seconds=$elapsed"
        psql_on bench_run -At -c "SELECT 'dead_tuples=' || n_dead_tup FROM pg_stat_user_tables
            WHERE relname = 'refresh_tokens'"
    } >"$RUN/$name.result"
    log "run $name done after ${elapsed}s: $(machine_load)"
}

# field FILE KEY: the value of KEY=value in FILE.
field() { sed -n "s/\(^\|.* \)$2=\([^ ]*\).*/\2/p" "$1" | head -n 1; }

run B "1s" drain
DURATION=$(printf '%.0f' "$(field "$RUN/B.result" seconds)")
run A off "$DURATION"

# --- 5. the numbers -----------------------------------------------------------------

report_load() {
    local label=$1 file=$2
    grep -q '^BENCH ' "$file" || {
        cat "$file" >&2
        die "wrk gave no result ($file)"
    }
    printf '  %-19s %8s req/s  p50 %7s ms  p90 %7s ms  p99 %7s ms  max %8s ms  non-200 %s  socket errors %s\n' \
        "$label" "$(field "$file" rps)" "$(field "$file" p50_ms)" "$(field "$file" p90_ms)" \
        "$(field "$file" p99_ms)" "$(field "$file" max_ms)" "$(field "$file" non200)" \
        "$(field "$file" socket_errors)"
}
ratio() { awk -v b="$(field "$RUN/B.$1" p99_ms)" -v a="$(field "$RUN/A.$1" p99_ms)" 'BEGIN { printf "%.2f", b / a }'; }

echo
echo "== bench/prune.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(free -g | awk '/^Mem:/ {print $2}') GiB;" \
    "PostgreSQL $(psql_on postgres -At -c 'SHOW server_version'), Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
echo "backlog: $EXPIRED expired refresh tokens + $LIVE live ones; prune batch $BATCH"
for name in B A; do
    if [ "$name" = B ]; then echo "run B, pruner on (every 1s):"; else echo "run A, pruner off:"; fi
    report_load "client_credentials" "$RUN/$name.cc"
    [ "$SESSIONS" -gt 0 ] && report_load "refresh_token" "$RUN/$name.refresh"
    printf '  %s s; rows left %s (still prunable %s); dead tuples %s; refresh_tokens vacuumed during %s\n' \
        "$(field "$RUN/$name.result" seconds)" "$(field "$RUN/$name.result" rows_left)" \
        "$(field "$RUN/$name.result" prunable_left)" "$(field "$RUN/$name.result" dead_tuples)" \
        "$(vacuumed "$RUN/$name.timeline")"
done
DRAINED=$(field "$RUN/B.result" drained)
echo "backlog gone after: ${DRAINED:-NOT within ${MAX_DRAIN}s} s (from the service's start)"
echo "p99(B)/p99(A): client_credentials $(ratio cc)$([ "$SESSIONS" -gt 0 ] && echo ", refresh_token $(ratio refresh)")"
echo "goal: p99 within 1.5x, backlog gone in under 600 s"
for name in A B; do
    for load in cc refresh; do
        [ -f "$RUN/$name.$load" ] || continue
        [ "$(field "$RUN/$name.$load" non200)" = 0 ] || die "run $name, $load: answers other than 200 (see $RUN/$name.$load)"
    done
done
[ -n "$DRAINED" ] || die "the backlog was not gone within ${MAX_DRAIN}s"
