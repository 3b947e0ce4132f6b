#!/usr/bin/env bash
# The side-by-side benchmark of issue 16: Latchkey, Keycloak and Ory Hydra on one
# machine, each server pinned to one core and wrk to another, on the same workloads.
#
#   bench/peers.sh            # all systems; about 23 minutes on 2 cores once built
#                             # (the first run also builds Hydra, fetches Keycloak and
#                             # builds Latchkey in release: add 10 to 20)
#   bench/peers.sh --quick    # a smoke run: Latchkey alone, 1 round of 3 s (about 1 minute
#                             # once built)
#
# A benchmark, not a test: it prints numbers and never fails on them, only when something
# does not work (a peer that does not build or start, an answer that is not 2xx, an
# introspection that does not say active). Neither ./test.sh nor CI runs it.
#
# What it does:
#   1. Gets each system, cached under ${LATCHKEY_CACHE_DIR:-~/.cache/latchkey}/bench by
#      version (delete a directory there to get it again):
#        latchkey  cargo build --release -p latchkey of this checkout, into
#                  $CARGO_TARGET_DIR (default: bench/target under the cache dir), or
#                  BENCH_BIN, a binary to measure instead.
#        hydra     the Go module github.com/ory/hydra/v2 at v2.3.0 (BENCH_HYDRA_VERSION)
#                  from the Go module proxy, built with CGO and the sqlite tags (its
#                  Makefile's) inside a generated go.mod that requires it: its own
#                  go.mod has replace directives, so `go install ...@v2.3.0` refuses
#                  it. GOMODCACHE and GOCACHE are kept under the cache dir.
#        keycloak  the Maven artifact org.keycloak:keycloak-quarkus-dist:26.7.3:tar.gz
#                  (BENCH_KEYCLOAK_VERSION), fetched with mvn dependency:copy (its local
#                  repository under the cache dir), run on the newest JDK of 21 or later
#                  found under /usr/lib/jvm (else the java on PATH; BENCH_JAVA_HOME
#                  chooses).
#      and wrk (apt-get install when missing).
#   2. Starts every system chosen (BENCH_SYSTEMS, default all five), each pinned to CPU 0
#      (taskset), listening on free loopback ports only, from empty state in a temporary
#      directory, in its documented quick-start configuration:
#        latchkey     the embedded default (SQLite and a local key directory), rate limits
#                     off; a client `bench` made by `latchkey client create
#                     --grant-type client_credentials`.
#        latchkey-pg  the same binary on PostgreSQL + Redis started by
#                     tests/scripts/services.sh (fsync off, as in the tests), the database
#                     and Redis pinned to CPU 0 too.
#        keycloak     kc.sh start-dev (dev-file H2 database, local caches), the admin made
#                     by KC_BOOTSTRAP_ADMIN_USERNAME/PASSWORD; a realm `bench` and a
#                     confidential client with service accounts (client_credentials)
#                     created through the admin REST API, with an audience mapper that
#                     puts the client in its tokens' aud: Keycloak's introspection
#                     answers active: false to a client not in the audience, even for
#                     its own token.
#        hydra        hydra serve all --dev on a SQLite file (the quick start's DSN,
#                     migrated with `hydra migrate sql up`), opaque access tokens; a
#                     client from `hydra create oauth2-client --grant-type
#                     client_credentials`. Usage statistics off (--sqa-opt-out).
#        hydra-jwt    the same with strategies.access_token=jwt.
#        latchkey-es256, latchkey-eddsa
#                     the embedded default with JWT_ALGORITHM=ES256 or EdDSA (its
#                     generated key is P-256 or Ed25519); not in the default set:
#                     BENCH_SYSTEMS="latchkey latchkey-es256 latchkey-eddsa" gives the
#                     issuance rate per algorithm.
#      Each gets one token request and one JWKS request, one at a time (Hydra makes its
#      keys on the first request that needs them). All keep running side by side (idle
#      ones cost nearly nothing) so that runs can alternate; RSS (VmRSS of the server
#      process) is read once all are up and set up.
#   3. Warms each system up on each workload (BENCH_WARMUP seconds, not counted), then
#      BENCH_ROUNDS rounds (default 3). A round is, per workload, one run of each system
#      (the order rotating from round to round), and openssl speed rsa2048 on CPU 0 (the
#      raw RSA-2048 signing rate of the server's core). A run is wrk on CPU 1, 1 thread,
#      32 connections (BENCH_CONNECTIONS), keep-alive, BENCH_DURATION seconds (default
#      15), with bench/peers/request.lua counting every answer that is not 2xx:
#        client_credentials  POST to the token endpoint, client_secret_basic.
#        introspection       POST token=<an access token of the client, fetched just
#                            before the run> to the introspection endpoint, as the client
#                            (Hydra's is on its admin port and ignores the credentials).
#        JWKS                GET the JWK set.
#   4. Reads RSS again, and prints a Markdown table: per workload the median req/s (with
#      the range over the rounds), the median of the p99 latencies, the ratio to Latchkey
#      (SQLite); RSS idle and after the runs; the RSA-2048 signing rate and Latchkey's
#      client_credentials as a fraction of it. A run with any non-2xx answer (or none at
#      all) is flagged below the table and makes the script exit 1.
#
# Pinning both to a core does not make the machine quiet: whatever else runs there (a
# build, a test suite) shares the cores; the load average before and after is printed.
#
# Knobs (environment): BENCH_SYSTEMS ("latchkey latchkey-pg keycloak hydra hydra-jwt"),
# BENCH_DURATION (15), BENCH_ROUNDS (3), BENCH_WARMUP (15), BENCH_CONNECTIONS (32),
# BENCH_SIGN_SECONDS (5), BENCH_SERVER_CPU (0), BENCH_LOAD_CPU (1), BENCH_START_TIMEOUT
# (600 s for each system to be ready), BENCH_BIN, BENCH_JAVA_HOME, BENCH_HYDRA_VERSION
# (v2.3.0), BENCH_KEYCLOAK_VERSION (26.7.3), BENCH_KEEP (1: leave the run directory with
# the servers' logs and wrk's outputs). --quick is BENCH_SYSTEMS=latchkey BENCH_DURATION=3
# BENCH_ROUNDS=1 BENCH_WARMUP=1 BENCH_SIGN_SECONDS=1 (each still overridable).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for arg in "$@"; do
    case "$arg" in
        --quick)
            : "${BENCH_SYSTEMS:=latchkey}" "${BENCH_DURATION:=3}" "${BENCH_ROUNDS:=1}"
            : "${BENCH_WARMUP:=1}" "${BENCH_SIGN_SECONDS:=1}"
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            printf 'usage: %s [--quick]\n' "$0" >&2
            exit 2
            ;;
    esac
done

read -r -a SYSTEMS <<<"${BENCH_SYSTEMS:-latchkey latchkey-pg keycloak hydra hydra-jwt}"
DURATION=${BENCH_DURATION:-15}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-15}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SIGN_SECONDS=${BENCH_SIGN_SECONDS:-5}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
START_TIMEOUT=${BENCH_START_TIMEOUT:-600}
HYDRA_VERSION=${BENCH_HYDRA_VERSION:-v2.3.0}
KEYCLOAK_VERSION=${BENCH_KEYCLOAK_VERSION:-26.7.3}
CACHE=${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}/bench
TARGET=${CARGO_TARGET_DIR:-$CACHE/target}
WORKLOADS=(token introspect jwks)

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}
has() {
    local s
    for s in "${SYSTEMS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

for s in "${SYSTEMS[@]}"; do
    case "$s" in latchkey | latchkey-pg | latchkey-es256 | latchkey-eddsa | keycloak | hydra | hydra-jwt) ;;
        *) die "unknown system '$s' in BENCH_SYSTEMS (latchkey latchkey-pg latchkey-es256 latchkey-eddsa keycloak hydra hydra-jwt)" ;;
    esac
done
[ "${#SYSTEMS[@]}" -gt 0 ] || die "BENCH_SYSTEMS is empty"
for n in "$DURATION" "$ROUNDS" "$WARMUP" "$CONNECTIONS" "$SIGN_SECONDS"; do
    case "$n" in '' | *[!0-9]*) die "BENCH_DURATION, _ROUNDS, _WARMUP, _CONNECTIONS and _SIGN_SECONDS are whole numbers" ;; esac
done
if [ "$DURATION" = 0 ] || [ "$ROUNDS" = 0 ]; then die "BENCH_DURATION and BENCH_ROUNDS must be at least 1"; fi
if ! taskset -c "$SERVER_CPU" true 2>/dev/null || ! taskset -c "$LOAD_CPU" true 2>/dev/null; then
    die "cannot pin to CPUs $SERVER_CPU and $LOAD_CPU (BENCH_SERVER_CPU, BENCH_LOAD_CPU): $(nproc) CPUs here"
fi
[ "$SERVER_CPU" != "$LOAD_CPU" ] || die "the server and wrk need two different CPUs"

# --- 1. tools and systems -----------------------------------------------------------

if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
for tool in curl jq openssl taskset; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# shellcheck source=../tests/scripts/services.sh
source "$ROOT/tests/scripts/services.sh"
RUN=
WRK_PID=
SERVICES=0
declare -A PID=()  # system -> the server process (whose RSS is read)
STARTED=()         # every process started, for the cleanup (kc.sh and its java too)

cleanup() {
    local pid
    [ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        if ! _lk_wait_gone "$pid" 30; then
            log "pid $pid did not stop on SIGTERM within 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    [ "$SERVICES" = 1 ] && latchkey_services_stop
    if [ -n "$RUN" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CACHE"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench-peers-XXXXXXXX")

# Builds this checkout in release unless BENCH_BIN names a binary.
get_latchkey() {
    if [ -n "${BENCH_BIN:-}" ]; then
        LATCHKEY_BIN=$BENCH_BIN
        log "measuring $LATCHKEY_BIN (BENCH_BIN), not building"
        return
    fi
    log "building Latchkey (release) into $TARGET"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --locked -p latchkey 2>"$RUN/latchkey-build.log") || {
        tail -n 30 "$RUN/latchkey-build.log" >&2
        die "the Latchkey build failed (cargo build --release --locked -p latchkey)"
    }
    LATCHKEY_BIN=$TARGET/release/latchkey
}

# Hydra's go.mod replaces one module by a directory the module zip does not hold
# (internal/httpclient, published as github.com/ory/hydra-client-go/v2) and another by a
# fork: so it cannot be built by `go install ...@version`. It is built as a dependency of
# a generated module that copies its replace directives to other modules (and lets the
# directory one fall back to the published client its go.mod requires).
get_hydra() {
    local dir=$CACHE/hydra-$HYDRA_VERSION mod
    HYDRA_BIN=$dir/hydra
    [ -x "$HYDRA_BIN" ] && return
    command -v go >/dev/null || die "go is needed to build Hydra"
    command -v "${CC:-cc}" >/dev/null || command -v gcc >/dev/null || die "a C compiler is needed to build Hydra (CGO, for SQLite)"
    log "building Hydra $HYDRA_VERSION (the Go module github.com/ory/hydra/v2, CGO) into $dir"
    rm -rf "$dir/module" && mkdir -p "$dir/module"
    export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS=-buildvcs=false
    (
        cd "$dir/module"
        printf 'module latchkey.bench/hydra\n\ngo 1.22\n' >go.mod
        mod=$(go mod download -json "github.com/ory/hydra/v2@$HYDRA_VERSION" | jq -er .GoMod)
        # `replace a => b v` lines, one at a time or inside a replace ( ... ) block.
        sed -n -e 's/^replace[[:space:]]\{1,\}\([^(].*\)$/\1/p' -e '/^replace[[:space:]]*($/,/^)/{/^replace\|^)/!p}' "$mod" |
            while read -r from arrow to version rest; do
                # Skipped: a local directory (no version), a version-specific left side.
                [ "$arrow" = "=>" ] && [ -n "$version" ] && [ -z "$rest" ] || continue
                go mod edit -replace "$from=$to@$version"
            done
        go get "github.com/ory/hydra/v2@$HYDRA_VERSION"
        CGO_ENABLED=1 go build -trimpath -tags sqlite,sqlite_omit_load_extension \
            -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION" \
            -o "$dir/hydra.partial" github.com/ory/hydra/v2
    ) >"$RUN/hydra-build.log" 2>&1 || {
        tail -n 30 "$RUN/hydra-build.log" >&2
        die "the Hydra build failed (log above)"
    }
    mv "$dir/hydra.partial" "$HYDRA_BIN"
}

get_keycloak() {
    local dir=$CACHE/keycloak-$KEYCLOAK_VERSION
    KEYCLOAK_HOME=$dir/keycloak-$KEYCLOAK_VERSION
    if [ ! -x "$KEYCLOAK_HOME/bin/kc.sh" ]; then
        command -v mvn >/dev/null || die "mvn is needed to fetch Keycloak"
        log "fetching Keycloak $KEYCLOAK_VERSION (org.keycloak:keycloak-quarkus-dist, tar.gz) into $dir"
        rm -rf "$dir" && mkdir -p "$dir/download"
        mvn -B -q -Dmaven.repo.local="$CACHE/m2" dependency:copy \
            -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz" \
            -DoutputDirectory="$dir/download" >"$RUN/keycloak-fetch.log" 2>&1 || {
            tail -n 30 "$RUN/keycloak-fetch.log" >&2
            die "fetching Keycloak failed (mvn dependency:copy, log above)"
        }
        tar -xzf "$dir/download/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz" -C "$dir"
        rm -rf "$dir/download"
        [ -x "$KEYCLOAK_HOME/bin/kc.sh" ] || die "the Keycloak archive has no keycloak-$KEYCLOAK_VERSION/bin/kc.sh"
    fi
    KEYCLOAK_JAVA_HOME=${BENCH_JAVA_HOME:-}
    if [ -z "$KEYCLOAK_JAVA_HOME" ]; then
        local d major best=0
        for d in /usr/lib/jvm/*/; do
            [ -x "$d/bin/java" ] || continue
            major=$("$d/bin/java" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p')
            if [ -n "$major" ] && [ "$major" -ge 21 ] && [ "$major" -gt "$best" ]; then
                best=$major
                KEYCLOAK_JAVA_HOME=${d%/}
            fi
        done
    fi
    if [ -n "$KEYCLOAK_JAVA_HOME" ]; then
        KEYCLOAK_JAVA=$KEYCLOAK_JAVA_HOME/bin/java
    else
        command -v java >/dev/null || die "java is needed to run Keycloak"
        KEYCLOAK_JAVA=$(command -v java)
    fi
    KEYCLOAK_JAVA_VERSION=$("$KEYCLOAK_JAVA" -version 2>&1 | head -n 1)
}

if has latchkey || has latchkey-pg || has latchkey-es256 || has latchkey-eddsa; then get_latchkey; fi
if has hydra || has hydra-jwt; then get_hydra; fi
has keycloak && get_keycloak

# --- 2. start them ------------------------------------------------------------------

# await_ready NAME URL PID: until URL answers 2xx, the process is gone or the deadline.
await_ready() {
    local name=$1 url=$2 pid=$3 deadline=$((SECONDS + START_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; do
        if ! _lk_alive "$pid"; then
            tail -n 40 "$RUN/$name.log" >&2
            die "$name exited before it was ready (log above)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || {
            tail -n 40 "$RUN/$name.log" >&2
            die "$name not ready within $START_TIMEOUT s ($url)"
        }
        sleep 0.2
    done
}

# pinned NAME COMMAND...: runs COMMAND on the server's CPU in the background, logging
# to $RUN/NAME.log; sets LAST_PID.
pinned() {
    local name=$1
    shift
    taskset -c "$SERVER_CPU" "$@" >"$RUN/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}

basic() { printf 'Basic %s' "$(printf '%s:%s' "$(jq -rn --arg v "$1" '$v|@uri')" "$(jq -rn --arg v "$2" '$v|@uri')" | base64 -w0)"; }
secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

declare -A LABEL=() AUTH=() URL=() PATH_OF=()

start_latchkey() {
    local sys=$1 dir=$RUN/$1 port client env_db=() alg=RS256
    mkdir -p "$dir"
    port=$(_lk_free_port)
    case "$sys" in
        latchkey-es256) alg=ES256 ;;
        latchkey-eddsa) alg=EdDSA ;;
    esac
    if [ "$sys" = latchkey-pg ]; then
        LABEL[$sys]="Latchkey (PostgreSQL + Redis)"
        psql "$LATCHKEY_TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE bench' >/dev/null
        env_db=(DATABASE_URL="${LATCHKEY_TEST_DATABASE_URL%/postgres}/bench" REDIS_URL="$LATCHKEY_TEST_REDIS_URL")
        env -u DATABASE_URL -u REDIS_URL LATCHKEY_DATA_DIR="$dir/data" "${env_db[@]}" "$LATCHKEY_BIN" migrate >/dev/null
    elif [ "$alg" != RS256 ]; then
        LABEL[$sys]="Latchkey (SQLite, $alg)"
    else
        LABEL[$sys]="Latchkey (SQLite)"
    fi
    client=$(env -u DATABASE_URL -u REDIS_URL LATCHKEY_DATA_DIR="$dir/data" "${env_db[@]}" \
        "$LATCHKEY_BIN" client create --output json --client-id bench --name bench \
        --grant-type client_credentials --scope api.read)
    AUTH[$sys]=$(basic bench "$(jq -er .client_secret <<<"$client")")
    pinned "$sys" env -u DATABASE_URL -u REDIS_URL "${env_db[@]}" \
        LATCHKEY_DATA_DIR="$dir/data" LATCHKEY_LISTEN="127.0.0.1:$port" LATCHKEY_METRICS_LISTEN=off \
        LATCHKEY_ISSUER="http://127.0.0.1:$port" JWT_ALGORITHM=$alg \
        RATE_LIMITING_DEFAULT=off RATE_LIMITING_CLIENT=off RATE_LIMITING_ROUTES= \
        "$LATCHKEY_BIN" serve
    PID[$sys]=$LAST_PID
    URL[$sys]=http://127.0.0.1:$port
    URL[$sys:introspect]=${URL[$sys]}
    PATH_OF[$sys:token]=/oauth/token
    PATH_OF[$sys:introspect]=/oauth/introspect
    PATH_OF[$sys:jwks]=/.well-known/jwks.json
    await_ready "$sys" "${URL[$sys]}/ready" "${PID[$sys]}"
}

start_hydra() {
    local sys=$1 dir=$RUN/$1 public admin strategy=opaque dsn client
    LABEL[$sys]="Hydra $HYDRA_VERSION (opaque)"
    if [ "$sys" = hydra-jwt ]; then
        strategy=jwt
        LABEL[$sys]="Hydra $HYDRA_VERSION (JWT)"
    fi
    mkdir -p "$dir"
    public=$(_lk_free_port)
    admin=$(_lk_free_port)
    [ "$admin" != "$public" ] || admin=$(_lk_free_port)
    dsn="sqlite://$dir/db.sqlite?_fk=true&mode=rwc"
    DSN=$dsn "$HYDRA_BIN" migrate sql up -e --yes >"$dir/migrate.log" 2>&1 || {
        tail -n 20 "$dir/migrate.log" >&2
        die "$sys: hydra migrate sql up failed"
    }
    pinned "$sys" env DSN="$dsn" SECRETS_SYSTEM="$(secret)" \
        SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT="$public" \
        SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT="$admin" \
        URLS_SELF_ISSUER="http://127.0.0.1:$public" STRATEGIES_ACCESS_TOKEN=$strategy \
        SQA_OPT_OUT=true \
        "$HYDRA_BIN" serve all --dev --sqa-opt-out
    PID[$sys]=$LAST_PID
    URL[$sys]=http://127.0.0.1:$public
    URL[$sys:introspect]=http://127.0.0.1:$admin
    PATH_OF[$sys:token]=/oauth2/token
    PATH_OF[$sys:introspect]=/admin/oauth2/introspect
    PATH_OF[$sys:jwks]=/.well-known/jwks.json
    await_ready "$sys" "http://127.0.0.1:$admin/health/ready" "${PID[$sys]}"
    await_ready "$sys" "${URL[$sys]}/health/ready" "${PID[$sys]}"
    client=$("$HYDRA_BIN" create oauth2-client --endpoint "http://127.0.0.1:$admin" \
        --name bench --grant-type client_credentials --format json)
    AUTH[$sys]=$(basic "$(jq -er .client_id <<<"$client")" "$(jq -er .client_secret <<<"$client")")
}

# Starts kc.sh; the realm and client come in setup_keycloak, once it is ready.
start_keycloak() {
    local sys=keycloak dir=$RUN/keycloak port mport
    LABEL[$sys]="Keycloak $KEYCLOAK_VERSION (start-dev)"
    # A copy of the distribution: start-dev writes its build and its H2 database into it.
    cp -a "$KEYCLOAK_HOME" "$dir"
    port=$(_lk_free_port)
    mport=$(_lk_free_port)
    KEYCLOAK_ADMIN_PASSWORD=$(secret)
    pinned "$sys" env JAVA_HOME="${KEYCLOAK_JAVA_HOME:-}" JAVA="$KEYCLOAK_JAVA" \
        KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="$KEYCLOAK_ADMIN_PASSWORD" \
        "$dir/bin/kc.sh" start-dev --http-host=127.0.0.1 --http-port="$port" \
        --http-management-host=127.0.0.1 --http-management-port="$mport"
    KEYCLOAK_SCRIPT_PID=$LAST_PID
    URL[$sys]=http://127.0.0.1:$port
    URL[$sys:introspect]=${URL[$sys]}
    PATH_OF[$sys:token]=/realms/bench/protocol/openid-connect/token
    PATH_OF[$sys:introspect]=/realms/bench/protocol/openid-connect/token/introspect
    PATH_OF[$sys:jwks]=/realms/bench/protocol/openid-connect/certs
}

setup_keycloak() {
    local sys=keycloak base token secret_value pid
    base=${URL[$sys]}
    await_ready "$sys" "$base/realms/master" "$KEYCLOAK_SCRIPT_PID"
    # kc.sh runs java as its child (or execs it, after a re-augmentation).
    if [ "$(cat "/proc/$KEYCLOAK_SCRIPT_PID/comm" 2>/dev/null)" = java ]; then
        PID[$sys]=$KEYCLOAK_SCRIPT_PID
    else
        for pid in $(ps -o pid= --ppid "$KEYCLOAK_SCRIPT_PID"); do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = java ] && PID[$sys]=$pid
        done
    fi
    [ -n "${PID[$sys]:-}" ] || die "keycloak: no java process under kc.sh (pid $KEYCLOAK_SCRIPT_PID)"
    STARTED=("${PID[$sys]}" "${STARTED[@]}")
    token=$(curl -fsS "$base/realms/master/protocol/openid-connect/token" \
        -d grant_type=password -d client_id=admin-cli -d username=admin \
        --data-urlencode "password=$KEYCLOAK_ADMIN_PASSWORD" | jq -er .access_token)
    curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"realm":"bench","enabled":true}' "$base/admin/realms"
    secret_value=$(secret)
    curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "$(jq -n --arg s "$secret_value" '{clientId: "bench", enabled: true, publicClient: false,
                clientAuthenticatorType: "client-secret", secret: $s, serviceAccountsEnabled: true,
                standardFlowEnabled: false, directAccessGrantsEnabled: false,
                protocolMappers: [{name: "bench-audience", protocol: "openid-connect",
                    protocolMapper: "oidc-audience-mapper",
                    config: {"included.client.audience": "bench", "access.token.claim": "true",
                             "introspection.token.claim": "true"}}]}')" \
        "$base/admin/realms/bench/clients"
    AUTH[$sys]=$(basic bench "$secret_value")
}

has keycloak && start_keycloak # the slowest to start: it starts first
if has latchkey-pg; then
    latchkey_services_install
    latchkey_services_start
    SERVICES=1
    # The database and Redis are part of that system: on the server's CPU too (backends
    # forked later inherit the postmaster's affinity).
    for pid in $(cat "$LATCHKEY_TEST_RUN_DIR/pg.pid") $(ps -o pid= --ppid "$(cat "$LATCHKEY_TEST_RUN_DIR/pg.pid")") \
        $(cat "$LATCHKEY_TEST_RUN_DIR/redis/redis.pid"); do
        taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null
    done
fi
for sys in "${SYSTEMS[@]}"; do
    case "$sys" in
        latchkey | latchkey-pg | latchkey-es256 | latchkey-eddsa) start_latchkey "$sys" ;;
        hydra | hydra-jwt) start_hydra "$sys" ;;
    esac
done
has keycloak && setup_keycloak

# access_token SYS: a fresh access token of the system's client.
access_token() {
    curl -fsS --max-time 120 -H "Authorization: ${AUTH[$1]}" -d grant_type=client_credentials \
        "${URL[$1]}${PATH_OF[$1:token]}" | jq -er .access_token
}

# One token and one JWKS request each, one at a time, before any load: Hydra generates
# its signing keys (RSA-4096) on the first request that needs them, and under 32
# concurrent requests on one core every one of them starts generating its own, for
# minutes.
for sys in "${SYSTEMS[@]}"; do
    access_token "$sys" >/dev/null || die "$sys: the first token request failed"
    curl -fsS --max-time 120 -o /dev/null "${URL[$sys]}${PATH_OF[$sys:jwks]}" || die "$sys: the first JWKS request failed"
done
log "all up: ${SYSTEMS[*]}"

# --- 3. the runs --------------------------------------------------------------------

rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
declare -A RSS_IDLE=() RSS_AFTER=()
for sys in "${SYSTEMS[@]}"; do RSS_IDLE[$sys]=$(rss_mib "${PID[$sys]}"); done

# field FILE KEY: the value of KEY=value in the BENCH line of FILE.
field() { awk -v k="$2" '/^BENCH / { for (i = 2; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' "$1"; }

# measure SYS WORKLOAD SECONDS OUT: one wrk run; its output in OUT.
measure() {
    local sys=$1 w=$2 secs=$3 out=$4 method=POST body='' base=${URL[$1]} token check
    case "$w" in
        token) body=grant_type=client_credentials ;;
        introspect)
            token=$(access_token "$sys") || die "$sys: no access token for the introspection run"
            body="token=$(jq -rn --arg v "$token" '$v|@uri')"
            base=${URL[$sys:introspect]}
            check=$(curl -fsS -H "Authorization: ${AUTH[$sys]}" -d "$body" "$base${PATH_OF[$sys:introspect]}" | jq -r .active)
            [ "$check" = true ] || die "$sys: introspection of a fresh access token did not answer active: true"
            ;;
        jwks) method=GET ;;
    esac
    BENCH_METHOD=$method BENCH_PATH=${PATH_OF[$sys:$w]} BENCH_BODY=$body BENCH_AUTH=${AUTH[$sys]} \
        taskset -c "$LOAD_CPU" wrk -t 1 -c "$CONNECTIONS" -d "${secs}s" --timeout 10s --latency \
        -s "$ROOT/bench/peers/request.lua" "$base" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || {
        cat "$out" >&2
        die "$sys $w: wrk failed"
    }
    WRK_PID=
    grep -q '^BENCH ' "$out" || {
        cat "$out" >&2
        die "$sys $w: wrk printed no result"
    }
}

sign_rate() {
    taskset -c "$SERVER_CPU" openssl speed -seconds "$SIGN_SECONDS" rsa2048 2>/dev/null |
        awk '/sign\/s/ { for (i = 1; i <= NF; i++) if ($i == "sign/s") col = i + 3 }
             /^rsa 2048 bits/ && col { print $col; found = 1 } END { exit !found }'
}

machine_load() {
    printf 'load average %s; compilers running: %s' \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|compile|go|ld|lld|clang|javac)$' || true)"
}

LOAD_BEFORE=$(machine_load)
log "before the runs: $LOAD_BEFORE"
mkdir -p "$RUN/wrk"
RESULTS=$RUN/results # lines: system workload round rps p99_ms non2xx socket_errors requests
: >"$RESULTS"
FLAGGED=()
# check OUT SYS WORKLOAD ROUND: flags a run with an answer that was not 2xx, or none.
check() {
    local non2xx requests
    non2xx=$(field "$1" non2xx)
    requests=$(field "$1" requests)
    if [ "$non2xx" != 0 ] || [ "$requests" = 0 ]; then
        FLAGGED+=("$2 $3 ($4): $requests requests, $non2xx not 2xx: $(grep -m1 'first non-2xx' "$1" || true)")
        log "FLAGGED: ${FLAGGED[-1]}"
    fi
}

if [ "$WARMUP" -gt 0 ]; then
    for sys in "${SYSTEMS[@]}"; do
        for w in "${WORKLOADS[@]}"; do
            log "warm-up: $sys $w, ${WARMUP} s"
            measure "$sys" "$w" "$WARMUP" "$RUN/wrk/$sys.$w.warmup"
            check "$RUN/wrk/$sys.$w.warmup" "$sys" "$w" warm-up
        done
    done
fi

SIGN=()
n=${#SYSTEMS[@]}
for round in $(seq 1 "$ROUNDS"); do
    for w in "${WORKLOADS[@]}"; do
        for i in $(seq 0 $((n - 1))); do
            sys=${SYSTEMS[$(((i + round - 1) % n))]}
            out=$RUN/wrk/$sys.$w.$round
            log "round $round/$ROUNDS: $sys $w, $DURATION s"
            measure "$sys" "$w" "$DURATION" "$out"
            check "$out" "$sys" "$w" "round $round"
            printf '%s %s %s %s %s %s %s %s\n' "$sys" "$w" "$round" "$(field "$out" rps)" \
                "$(field "$out" p99_ms)" "$(field "$out" non2xx)" "$(field "$out" socket_errors)" \
                "$(field "$out" requests)" >>"$RESULTS"
        done
    done
    log "round $round/$ROUNDS: openssl speed rsa2048 on CPU $SERVER_CPU, $SIGN_SECONDS s"
    rate=$(sign_rate) || die "openssl speed rsa2048 gave no sign/s"
    SIGN+=("$rate")
done
for sys in "${SYSTEMS[@]}"; do RSS_AFTER[$sys]=$(rss_mib "${PID[$sys]}"); done
LOAD_AFTER=$(machine_load)
log "after the runs: $LOAD_AFTER"

# --- 4. the table -------------------------------------------------------------------

# stats: "median min max" of the numbers on stdin, one a line.
stats() {
    sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        print m, v[1], v[NR] }'
}
# column SYS WORKLOAD N: the Nth column of the results of SYS on WORKLOAD, one a line.
column() { awk -v s="$1" -v w="$2" -v c="$3" '$1 == s && $2 == w { print $c }' "$RESULTS"; }
# num X: X with thousands separators, no decimals at 100 and above, one below.
num() {
    awk -v x="$1" 'BEGIN {
        if (x < 100) { printf "%.1f", x; exit }
        s = sprintf("%.0f", x); out = ""
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        printf "%s%s", s, out }'
}
ms() { awk -v x="$1" 'BEGIN { if (x < 10) printf "%.2f ms", x; else if (x < 100) printf "%.1f ms", x; else printf "%.0f ms", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "–" }'; }

declare -A MEDIAN=()
row_rps() {
    local w=$1 sys med min max cells=""
    for sys in "${SYSTEMS[@]}"; do
        read -r med min max < <(column "$sys" "$w" 4 | stats)
        MEDIAN[$sys:$w]=$med
        if [ "$ROUNDS" -gt 1 ]; then cells+=" $(num "$med") ($(num "$min")–$(num "$max")) |"; else cells+=" $(num "$med") |"; fi
    done
    printf '|%s\n' "$cells"
}
row_p99() {
    local w=$1 sys med min max cells=""
    for sys in "${SYSTEMS[@]}"; do
        read -r med min max < <(column "$sys" "$w" 5 | stats)
        cells+=" $(ms "$med") |"
    done
    printf '|%s\n' "$cells"
}
row_ratio() {
    local w=$1 sys cells=""
    for sys in "${SYSTEMS[@]}"; do cells+=" $(ratio "${MEDIAN[$sys:$w]}" "${MEDIAN[latchkey:$w]}") |"; done
    printf '|%s\n' "$cells"
}

header="| |"
rule="|---|"
for sys in "${SYSTEMS[@]}"; do
    header+=" ${LABEL[$sys]} |"
    rule+="---|"
done
declare -A TITLE=([token]="client_credentials" [introspect]="introspection of an access token" [jwks]="JWKS GET")
read -r SIGN_MED SIGN_MIN SIGN_MAX < <(printf '%s\n' "${SIGN[@]}" | stats)

echo
echo "== bench/peers.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
echo
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(free -g | awk '/^Mem:/ {print $2}') GiB;" \
    "servers pinned to CPU $SERVER_CPU, wrk (1 thread, $CONNECTIONS connections, keep-alive) to CPU $LOAD_CPU;" \
    "$ROUNDS round(s) of $DURATION s per system and workload, alternating, after a $WARMUP s warm-up."
echo "Before the runs: $LOAD_BEFORE. After: $LOAD_AFTER."
has keycloak && echo "Keycloak on $KEYCLOAK_JAVA_VERSION."
has latchkey-pg && echo "PostgreSQL $(psql "$LATCHKEY_TEST_DATABASE_URL" -X -At -c 'SHOW server_version') (fsync off) and Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), on CPU $SERVER_CPU too; their RSS is not counted."
echo
echo "$header"
echo "$rule"
for w in "${WORKLOADS[@]}"; do
    printf '| %s, req/s ' "${TITLE[$w]}"
    row_rps "$w"
    printf '| %s, p99 ' "${TITLE[$w]}"
    row_p99 "$w"
    if has latchkey && [ "${#SYSTEMS[@]}" -gt 1 ]; then
        printf '| %s, × Latchkey (SQLite) ' "${TITLE[$w]}"
        row_ratio "$w"
    fi
done
cells=""
for sys in "${SYSTEMS[@]}"; do cells+=" ${RSS_IDLE[$sys]} MiB |"; done
echo "| RSS idle, after startup |$cells"
cells=""
for sys in "${SYSTEMS[@]}"; do cells+=" ${RSS_AFTER[$sys]} MiB |"; done
echo "| RSS after the runs |$cells"
echo
if [ "$ROUNDS" -gt 1 ]; then
    echo "req/s: the median of the rounds (their range); p99: the median of the rounds' p99."
fi
printf 'Raw RSA-2048 signing on CPU %s (openssl speed rsa2048): %s sign/s' "$SERVER_CPU" "$(num "$SIGN_MED")"
[ "$ROUNDS" -gt 1 ] && printf ' (%s–%s)' "$(num "$SIGN_MIN")" "$(num "$SIGN_MAX")"
echo "."
for sys in latchkey latchkey-pg; do
    has "$sys" && echo "${LABEL[$sys]} client_credentials: $(ratio "${MEDIAN[$sys:token]}" "$SIGN_MED") of the signing rate."
done
if [ "${#FLAGGED[@]}" -gt 0 ]; then
    echo
    echo "FLAGGED runs (answers that were not 2xx, or none):"
    printf -- '- %s\n' "${FLAGGED[@]}"
    exit 1
fi
echo "Every answer of every run was 2xx ($(num "$(awk '{ n += $8 } END { printf "%d", n }' "$RESULTS")") requests; socket errors: $(awk '{ n += $7 } END { printf "%d", n }' "$RESULTS"))."
