#!/usr/bin/env bash
# Where the server's time goes on one workload: the release build of this checkout, the
# embedded default (SQLite), pinned to CPU 0, loaded by wrk on CPU 1 (32 connections)
# while `perf record` samples it (software cpu-clock: works where hardware counters are
# not exposed, as on many virtual machines), then the hottest functions.
#
#   bench/profile.sh token        # client_credentials (default)
#   bench/profile.sh introspect   # introspection of an access token
#   bench/profile.sh jwks         # GET /.well-known/jwks.json
#
# Knobs: PROFILE_SECONDS (15), PROFILE_ALGORITHM (RS256; ES256, EdDSA), BENCH_BIN (a
# binary to profile instead of building), PROFILE_KEEP=1 (keep perf.data and the logs).
# Needs perf (Debian's linux-perf: installed when missing), wrk, curl, jq. Not run by CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKLOAD=${1:-token}
SECONDS_=${PROFILE_SECONDS:-15}
ALG=${PROFILE_ALGORITHM:-RS256}
CACHE=${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}
TARGET=${CARGO_TARGET_DIR:-$CACHE/bench/target}
die() { printf 'profile.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '[profile] %s\n' "$*" >&2; }

case "$WORKLOAD" in token | introspect | jwks) ;; *) die "unknown workload $WORKLOAD (token, introspect, jwks)" ;; esac
if ! command -v perf >/dev/null || ! command -v wrk >/dev/null; then
    log "installing perf and wrk"
    apt-get install -y -q linux-perf wrk >/dev/null || die "apt-get install linux-perf wrk failed"
fi
for tool in curl jq taskset; do command -v "$tool" >/dev/null || die "$tool is needed"; done

if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
else
    log "building Latchkey (release) into $TARGET"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --locked -p latchkey -q)
    BIN=$TARGET/release/latchkey
fi

RUN=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    if [ "${PROFILE_KEEP:-}" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export LATCHKEY_DATA_DIR=$RUN/data
unset DATABASE_URL REDIS_URL
client=$("$BIN" client create --output json --client-id bench --name bench \
    --grant-type client_credentials --scope api.read)
SECRET=$(jq -er .client_secret <<<"$client")
AUTH="Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"
taskset -c 0 env LATCHKEY_LISTEN="127.0.0.1:$PORT" LATCHKEY_METRICS_LISTEN=off \
    LATCHKEY_ISSUER="http://127.0.0.1:$PORT" JWT_ALGORITHM="$ALG" \
    RATE_LIMITING_DEFAULT=off RATE_LIMITING_CLIENT=off RATE_LIMITING_ROUTES= \
    "$BIN" serve >"$RUN/server.log" 2>&1 &
PID=$!
base=http://127.0.0.1:$PORT
deadline=$((SECONDS + 60))
until curl -sf "$base/ready" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "the server did not become ready: $(tail -n 5 "$RUN/server.log")"
    kill -0 "$PID" 2>/dev/null || die "the server exited: $(tail -n 5 "$RUN/server.log")"
    sleep 0.2
done
token=$(curl -sf -H "Authorization: $AUTH" -d grant_type=client_credentials "$base/oauth/token" | jq -er .access_token)

export BENCH_AUTH=$AUTH BENCH_METHOD=POST BENCH_BODY=
case "$WORKLOAD" in
    token) BENCH_PATH=/oauth/token BENCH_BODY=grant_type=client_credentials ;;
    introspect) BENCH_PATH=/oauth/introspect BENCH_BODY="token=$token" ;;
    jwks) BENCH_PATH=/.well-known/jwks.json BENCH_METHOD=GET BENCH_AUTH= ;;
esac
export BENCH_PATH BENCH_BODY BENCH_METHOD

log "$WORKLOAD ($ALG): wrk on CPU 1 for $SECONDS_ s, perf record of the server"
perf record -e cpu-clock -F 999 -g -p "$PID" -o "$RUN/perf.data" -- sleep "$SECONDS_" 2>"$RUN/perf.log" &
perf_pid=$!
taskset -c 1 wrk -t1 -c32 -d"${SECONDS_}s" -s "$ROOT/bench/peers/request.lua" "$base" >"$RUN/wrk.txt" 2>&1 || true
wait "$perf_pid" || die "perf record failed: $(cat "$RUN/perf.log")"
grep -E 'Requests/sec|^BENCH' "$RUN/wrk.txt" || true
echo
echo "Hottest functions (self time, % of the server's samples):"
perf report -i "$RUN/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 1.5 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n 30
echo
echo "By library (self time):"
perf report -i "$RUN/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n 10
