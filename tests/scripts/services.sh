#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis for Latchkey's test suite.
#
# Two ways to use it:
#
#   1. Sourced (this is what ./test.sh does):
#        source tests/scripts/services.sh
#        trap latchkey_services_stop EXIT
#        latchkey_services_install      # apt-get install what is missing
#        latchkey_services_start        # exports LATCHKEY_TEST_* in this shell
#
#   2. Standalone:
#        eval "$(tests/scripts/services.sh start)"   # prints `export ...` lines
#        tests/scripts/services.sh env                # print them again
#        tests/scripts/services.sh stop
#        tests/scripts/services.sh ensure             # install packages + rust tools only
#
# After a start these are exported:
#   LATCHKEY_TEST_DATABASE_URL  postgres://postgres:<pw>@127.0.0.1:<port>/postgres
#   LATCHKEY_TEST_REDIS_URL     redis://default:<pw>@127.0.0.1:<port>/
#   LATCHKEY_TEST_RUN_DIR       the run dir holding data, sockets, logs and pids
#
# Everything lives in one run dir, ${TMPDIR:-/tmp}/latchkey-test-XXXXXXXX, which
# stop removes. PostgreSQL listens only on 127.0.0.1 (plus a unix socket inside
# the run dir), Redis only on 127.0.0.1; both on free ports and with random
# passwords. Any failure is reported on stderr and returned as non-zero; a failed
# start tears down whatever it had already started. A run killed too hard for
# its EXIT trap (SIGKILL, OOM) leaves its run dir behind with its owner's pid;
# the next start stops those services and removes that dir.
#
# LATCHKEY_SERVICES_LISTEN (default 127.0.0.1) moves both servers to another address
# of this machine, and LATCHKEY_SERVICES_ALLOW_CIDR (networks, space-separated) lets
# PostgreSQL clients from there in (password-checked): tests/cluster/up.sh puts them on the host side of the
# test node's veth, where the pods reach them as external services.
#
# The functions do not rely on the caller's `set -e`/`set -u` and do not change
# the caller's shell options. Internal names start with `_lk_`.

# ----------------------------------------------------------------------------
# small helpers

_lk_log() { printf '[services] %s\n' "$*" >&2; }
_lk_err() { printf '[services] ERROR: %s\n' "$*" >&2; }

_lk_is_root() { [ "$(id -u)" = 0 ]; }

# True if command $1 is on PATH and executable. (`command -v` alone also
# reports a non-executable file when nothing better is found.)
_lk_have() {
    local p
    p=$(command -v "$1" 2>/dev/null) || return 1
    case "$p" in /*) [ -x "$p" ] ;; *) return 1 ;; esac
}

# A random hex password (URL-safe, no quoting needed anywhere).
_lk_random_pw() {
    local pw
    pw=$(od -An -tx1 -N16 /dev/urandom 2>/dev/null | tr -d ' \n')
    if [ "${#pw}" -ne 32 ]; then
        _lk_err "could not read /dev/urandom for a password"
        return 1
    fi
    printf '%s\n' "$pw"
}

# True if something accepts TCP connections on the listen address, port $1.
_lk_port_in_use() {
    (exec 3<>"/dev/tcp/${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}/$1") 2>/dev/null
}

# Print a TCP port on the listen address that is free right now.
_lk_free_port() {
    local port _
    if _lk_have python3; then
        port=$(python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}" 2>/dev/null) || port=
        if [ -n "$port" ] && ! _lk_port_in_use "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    fi
    for _ in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
        if ! _lk_port_in_use "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    _lk_err "could not find a free TCP port on 127.0.0.1"
    return 1
}

# Directory holding initdb/pg_ctl/postgres/pg_isready (newest installed major).
_lk_pg_bindir() {
    local d
    if [ -n "${LATCHKEY_PG_BINDIR:-}" ]; then
        printf '%s\n' "$LATCHKEY_PG_BINDIR"
        [ -x "$LATCHKEY_PG_BINDIR/initdb" ]
        return
    fi
    # shellcheck disable=SC2012  # fixed, well-formed paths
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    if _lk_have initdb; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# Run a command as the postgres OS user when we are root (postgres refuses to
# run as root), directly otherwise. Runs from / so an unreadable cwd such as
# /root doesn't bother the postgres user.
_lk_as_pg() {
    if _lk_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# True if process $1 exists and is not a zombie. (A daemon's parent is init;
# an init that reaps slowly leaves exited servers as zombies for a while.)
_lk_alive() {
    local state
    case "$1" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$1" 2>/dev/null || return 1
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case "$state" in Z*) return 1 ;; esac
    return 0
}

# True if $1 is a live process whose command name contains $2.
_lk_pid_is() {
    local pid=$1 name=$2 comm
    _lk_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
    case "$comm" in *"$name"*) return 0 ;; *) return 1 ;; esac
}

# Wait up to $2 seconds for pid $1 to go away.
_lk_wait_gone() {
    local pid=$1 tries=$(($2 * 10))
    while [ "$tries" -gt 0 ] && _lk_alive "$pid"; do
        sleep 0.1
        tries=$((tries - 1))
    done
    ! _lk_alive "$pid"
}

# ----------------------------------------------------------------------------
# installation

# Install postgresql / redis-server, and chromium + chromium-driver for the
# headless-browser test (service/tests/browser.rs), from Debian if they are missing;
# and Python's aiosmtpd from PyPI for the SMTP sink of service/tests/email.rs
# (tests/scripts/smtp_sink.py).
latchkey_services_install() {
    local pkgs=() made_policy=0 rc=0
    _lk_install_aiosmtpd || return 1
    _lk_pg_bindir >/dev/null || pkgs+=(postgresql)
    if ! _lk_have redis-server || ! _lk_have redis-cli; then
        pkgs+=(redis-server)
    fi
    # psql and pg_isready come with postgresql(-client); pg_isready is looked up
    # in the server's bindir, psql is used to verify the password works.
    _lk_have psql || pkgs+=(postgresql-client)
    # The browser test runs these exact paths (not whatever is first on PATH).
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        pkgs+=(chromium chromium-driver)
    fi
    [ "${#pkgs[@]}" -eq 0 ] && return 0

    if ! _lk_is_root; then
        _lk_err "missing ${pkgs[*]} and not root, so cannot apt-get install them; install them and retry"
        return 1
    fi
    if ! _lk_have apt-get; then
        _lk_err "missing ${pkgs[*]} and there is no apt-get on this machine"
        return 1
    fi
    _lk_log "installing ${pkgs[*]} (apt-get update + install)"
    # Keep the packages' maintainer scripts from starting system-wide servers
    # (a postgres on 5432, a redis on 6379) that nobody would stop again.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -q -o Acquire::Retries=3 >&2; then
        _lk_err "apt-get update failed"
        rc=1
    elif ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "${pkgs[@]}" </dev/null >&2; then
        _lk_err "apt-get install ${pkgs[*]} failed"
        rc=1
    fi
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || return 1

    if ! _lk_pg_bindir >/dev/null; then
        _lk_err "postgresql was installed but no initdb was found under /usr/lib/postgresql/*/bin"
        return 1
    fi
    if ! _lk_have redis-server || ! _lk_have redis-cli; then
        _lk_err "redis-server was installed but redis-server/redis-cli are still not on PATH"
        return 1
    fi
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        _lk_err "chromium/chromium-driver were installed but /usr/bin/chromium or /usr/bin/chromedriver is missing"
        return 1
    fi
    return 0
}

# aiosmtpd (PyPI) for the loopback SMTP sink, installed with pip when missing.
_lk_install_aiosmtpd() {
    if ! _lk_have python3; then
        _lk_err "python3 is missing: the email tests run an aiosmtpd SMTP sink"
        return 1
    fi
    python3 -c 'import aiosmtpd' 2>/dev/null && return 0
    _lk_log "installing aiosmtpd (pip)"
    if ! python3 -m pip install --quiet aiosmtpd >&2 \
        && ! python3 -m pip install --quiet --break-system-packages aiosmtpd >&2; then
        _lk_err "python3 -m pip install aiosmtpd failed"
        return 1
    fi
    if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
        _lk_err "aiosmtpd was installed but python3 cannot import it"
        return 1
    fi
    return 0
}

# Make sure cargo is on PATH and rustfmt + clippy are installed.
latchkey_ensure_rust_tools() {
    if ! _lk_have cargo && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! _lk_have cargo; then
        _lk_err "cargo not found (expected rustup's cargo on PATH or in ~/.cargo/bin)"
        return 1
    fi
    if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
        return 0
    fi
    if ! _lk_have rustup; then
        _lk_err "cargo fmt / cargo clippy missing and no rustup to install them"
        return 1
    fi
    _lk_log "installing rustup components rustfmt and clippy"
    if ! rustup component add rustfmt clippy >&2; then
        _lk_err "rustup component add rustfmt clippy failed"
        return 1
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        _lk_err "cargo fmt / cargo clippy still unavailable after rustup component add"
        return 1
    fi
    return 0
}

# ----------------------------------------------------------------------------
# start / stop

# Base directory for run dirs. As root the postgres user must be able to reach
# the run dir, so fall back to /tmp if TMPDIR is somewhere it cannot enter.
_lk_base_dir() {
    local base=${TMPDIR:-/tmp}
    base=${base%/}
    [ -n "$base" ] || base=/tmp
    if _lk_is_root && [ "$base" != /tmp ] && ! runuser -u postgres -- test -x "$base" 2>/dev/null; then
        base=/tmp
    fi
    printf '%s\n' "$base"
}

# Stop services of run dirs left behind by a test run that was killed hard
# (SIGKILL, OOM, ...): their recorded owner process is gone. Run dirs of
# standalone starts and of live owners are left alone.
_lk_reap_stale() {
    local base dir owner
    base=$(_lk_base_dir)
    for dir in "$base"/latchkey-test-*; do
        if [ ! -d "$dir" ] || [ ! -f "$dir/owner.pid" ]; then continue; fi
        owner=$(cat "$dir/owner.pid" 2>/dev/null) || continue
        case "$owner" in '' | *[!0-9]*) continue ;; esac
        _lk_alive "$owner" && continue
        _lk_log "cleaning up stale run dir $dir (its test run, pid $owner, is gone)"
        _lk_stop_dir "$dir" || true
    done
}

_lk_start_postgres() {
    local run=$1 bindir pgdir data pw port attempt
    if ! bindir=$(_lk_pg_bindir); then
        _lk_err "PostgreSQL server binaries (initdb) not found; run latchkey_services_install / 'services.sh ensure'"
        return 1
    fi
    if _lk_is_root && ! id postgres >/dev/null 2>&1; then
        _lk_err "running as root but there is no 'postgres' OS user to run the server as"
        return 1
    fi
    pgdir=$run/pg
    data=$pgdir/data
    mkdir -p "$pgdir/sock" || { _lk_err "cannot create $pgdir"; return 1; }
    # Unix socket paths are limited to ~107 bytes; with a very long TMPDIR go
    # without the socket (tests use TCP anyway).
    local sockdir=$pgdir/sock
    if [ "${#sockdir}" -gt 85 ]; then
        _lk_log "run dir path too long for a unix socket; PostgreSQL will listen on TCP only"
        sockdir=
    fi
    chmod 700 "$pgdir"
    pw=$(_lk_random_pw) || return 1
    (umask 077 && printf '%s\n' "$pw" >"$pgdir/pwfile") || { _lk_err "cannot write $pgdir/pwfile"; return 1; }
    if _lk_is_root; then
        chown -R postgres: "$pgdir" || { _lk_err "cannot chown $pgdir to postgres"; return 1; }
    fi

    if ! _lk_as_pg "$bindir/initdb" -D "$data" -U postgres --auth=scram-sha-256 \
        --pwfile="$pgdir/pwfile" --encoding=UTF8 --locale=C --no-sync \
        >"$run/initdb.log" 2>&1; then
        _lk_err "initdb failed; its output:"
        cat "$run/initdb.log" >&2
        return 1
    fi
    rm -f "$pgdir/pwfile"
    # shellcheck disable=SC2016  # $1 is for the inner sh
    if ! _lk_as_pg sh -c 'cat >>"$1"' sh "$data/postgresql.conf" <<EOF

# --- latchkey test cluster (tests/scripts/services.sh) ---
listen_addresses = '${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}'
unix_socket_directories = '$sockdir'
max_connections = 200
fsync = off
full_page_writes = off
synchronous_commit = off
log_min_messages = warning
EOF
    then
        _lk_err "cannot write $data/postgresql.conf"
        return 1
    fi
    # shellcheck disable=SC2086  # a space-separated list of networks
    if [ -n "${LATCHKEY_SERVICES_ALLOW_CIDR:-}" ] &&
        ! printf 'host all all %s scram-sha-256\n' $LATCHKEY_SERVICES_ALLOW_CIDR |
        _lk_as_pg sh -c 'cat >>"$1"' sh "$data/pg_hba.conf"; then
        _lk_err "cannot write $data/pg_hba.conf"
        return 1
    fi

    # The port is passed on the command line so a lost race for it can be
    # retried with another one.
    for attempt in 1 2 3; do
        port=$(_lk_free_port) || return 1
        printf '%s\n' "$port" >"$run/pg.port"
        # start each attempt with an empty log (truncating keeps the owner)
        [ -f "$pgdir/postgres.log" ] && : >"$pgdir/postgres.log"
        if _lk_as_pg "$bindir/pg_ctl" start -D "$data" -l "$pgdir/postgres.log" \
            -w -t 60 -o "-p $port" >>"$run/pg_ctl.log" 2>&1; then
            break
        fi
        port=
        # Port taken between probe and bind? Then try another one.
        if grep -q 'could not bind' "$pgdir/postgres.log" 2>/dev/null && [ "$attempt" -lt 3 ]; then
            _lk_log "postgres lost the race for its port, retrying on another one"
            _lk_as_pg "$bindir/pg_ctl" stop -D "$data" -m immediate -w >/dev/null 2>&1
            continue
        fi
        break
    done
    if [ -z "$port" ]; then
        _lk_err "PostgreSQL did not start; pg_ctl said:"
        tail -n 20 "$run/pg_ctl.log" >&2
        _lk_err "tail of $pgdir/postgres.log:"
        tail -n 30 "$pgdir/postgres.log" >&2 2>/dev/null
        return 1
    fi
    head -n 1 "$data/postmaster.pid" >"$run/pg.pid" 2>/dev/null

    local tries=100
    until "$bindir/pg_isready" -q -h ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1} -p "$port" -d postgres -t 2; do
        tries=$((tries - 1))
        if [ "$tries" -le 0 ]; then
            _lk_err "PostgreSQL on ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:$port never answered pg_isready; tail of its log:"
            tail -n 30 "$pgdir/postgres.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.2
    done

    local url="postgres://postgres:${pw}@${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:${port}/postgres"
    if _lk_have psql; then
        local out
        if ! out=$(PGCONNECT_TIMEOUT=10 timeout 30 psql "$url" -X -At -c 'select 1' 2>&1) || [ "$out" != 1 ]; then
            _lk_err "PostgreSQL answers but 'select 1' with the generated password failed: $out"
            return 1
        fi
    fi
    LATCHKEY_TEST_DATABASE_URL=$url
    export LATCHKEY_TEST_DATABASE_URL
    _lk_log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') ready on ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:$port"
    return 0
}

_lk_start_redis() {
    local run=$1 rdir pw port attempt tries out
    if ! _lk_have redis-server || ! _lk_have redis-cli; then
        _lk_err "redis-server / redis-cli not found; run latchkey_services_install / 'services.sh ensure'"
        return 1
    fi
    rdir=$run/redis
    mkdir -p "$rdir" || { _lk_err "cannot create $rdir"; return 1; }
    chmod 700 "$rdir"
    pw=$(_lk_random_pw) || return 1
    # The password goes in a config file rather than on the command line, so it
    # doesn't show up in `ps`.
    (umask 077 && printf 'requirepass %s\n' "$pw" >"$rdir/auth.conf") || { _lk_err "cannot write $rdir/auth.conf"; return 1; }

    for attempt in 1 2 3; do
        port=$(_lk_free_port) || return 1
        rm -f "$rdir/redis.pid"
        if redis-server "$rdir/auth.conf" \
            --bind ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1} --port "$port" \
            --save '' --appendonly no \
            --dir "$rdir" \
            --daemonize yes --pidfile "$rdir/redis.pid" \
            --logfile "$rdir/redis.log" >>"$rdir/start.log" 2>&1; then
            tries=100
            out=
            while [ "$tries" -gt 0 ]; do
                # Failed to bind? It exits before writing its pidfile then.
                # (Checked before pinging: whatever holds the port may never
                # answer, hence also the timeout.)
                if grep -qiE 'could not create server|address already in use' "$rdir/redis.log" 2>/dev/null; then
                    break
                fi
                out=$(REDISCLI_AUTH=$pw timeout 2 redis-cli --no-auth-warning -h ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1} -p "$port" ping 2>&1) || out=
                [ "$out" = PONG ] && break
                # daemon already gone? then stop waiting
                if [ -s "$rdir/redis.pid" ] && ! _lk_alive "$(cat "$rdir/redis.pid")"; then
                    break
                fi
                tries=$((tries - 1))
                sleep 0.1
            done
            if [ "$out" = PONG ]; then
                break
            fi
        fi
        # make sure a half-started server of this attempt is gone
        if [ -s "$rdir/redis.pid" ] && _lk_pid_is "$(cat "$rdir/redis.pid")" redis; then
            kill -KILL "$(cat "$rdir/redis.pid")" 2>/dev/null
        fi
        if grep -qi 'address already in use' "$rdir/redis.log" 2>/dev/null && [ "$attempt" -lt 3 ]; then
            _lk_log "redis lost the race for its port, retrying on another one"
            : >"$rdir/redis.log"
            continue
        fi
        _lk_err "Redis did not start / never answered PING on ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:$port; output:"
        tail -n 20 "$rdir/start.log" >&2 2>/dev/null
        tail -n 30 "$rdir/redis.log" >&2 2>/dev/null
        return 1
    done
    printf '%s\n' "$port" >"$run/redis.port"
    # User "default" is the one requirepass protects. Spelled out because
    # redis-cli 7.0 sends `AUTH "" <pw>` for redis://:<pw>@..., which fails;
    # Rust clients accept either form.
    local url="redis://default:${pw}@${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:${port}/"
    if ! out=$(timeout 10 redis-cli --no-auth-warning -u "$url" ping 2>&1) || [ "$out" != PONG ]; then
        _lk_err "Redis answers but PING through the URL with the generated password failed: $out"
        return 1
    fi
    LATCHKEY_TEST_REDIS_URL=$url
    export LATCHKEY_TEST_REDIS_URL
    _lk_log "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') ready on ${LATCHKEY_SERVICES_LISTEN:-127.0.0.1}:$port"
    return 0
}

# Start PostgreSQL and Redis in a new run dir and export LATCHKEY_TEST_*.
# Optional $1: pid of the process owning the run (default: this shell); when
# it dies without stopping, the next start cleans the run dir up.
latchkey_services_start() {
    local owner=${1:-$$} base run
    if [ -n "${LATCHKEY_TEST_RUN_DIR:-}" ] && [ -d "${LATCHKEY_TEST_RUN_DIR}" ]; then
        _lk_err "services already started in this shell ($LATCHKEY_TEST_RUN_DIR); stop them first"
        return 1
    fi
    _lk_reap_stale
    base=$(_lk_base_dir)
    if ! run=$(mktemp -d "$base/latchkey-test-XXXXXXXX"); then
        _lk_err "cannot create a run dir under $base"
        return 1
    fi
    chmod 711 "$run"   # the postgres user must be able to traverse it
    printf '%s\n' "$owner" >"$run/owner.pid"
    LATCHKEY_TEST_RUN_DIR=$run
    export LATCHKEY_TEST_RUN_DIR
    _lk_log "run dir $run"

    if ! _lk_start_postgres "$run" || ! _lk_start_redis "$run"; then
        _lk_err "starting test services failed; tearing down what was started"
        latchkey_services_stop
        return 1
    fi
    {
        printf 'export LATCHKEY_TEST_RUN_DIR=%s\n' "$LATCHKEY_TEST_RUN_DIR"
        printf 'export LATCHKEY_TEST_DATABASE_URL=%s\n' "$LATCHKEY_TEST_DATABASE_URL"
        printf 'export LATCHKEY_TEST_REDIS_URL=%s\n' "$LATCHKEY_TEST_REDIS_URL"
    } >"$run/env"
    chmod 600 "$run/env"
    return 0
}

# Stop whatever runs from run dir $1 and delete the dir. Never fails.
_lk_stop_dir() {
    local run=$1 bindir pid child
    [ -n "$run" ] && [ -d "$run" ] || return 0
    case "$(basename "$run")" in
        latchkey-test-*) ;;
        *)
            _lk_err "refusing to clean up $run: not a latchkey-test-* run dir"
            return 0
            ;;
    esac

    # PostgreSQL: fast shutdown, then immediate, then SIGKILL.
    if [ -f "$run/pg/data/postmaster.pid" ] || [ -s "$run/pg.pid" ]; then
        pid=$(head -n 1 "$run/pg/data/postmaster.pid" 2>/dev/null) || pid=
        [ -n "$pid" ] || pid=$(cat "$run/pg.pid" 2>/dev/null) || pid=
        if bindir=$(_lk_pg_bindir) && [ -f "$run/pg/data/postmaster.pid" ]; then
            _lk_as_pg "$bindir/pg_ctl" stop -D "$run/pg/data" -m fast -w -t 20 >/dev/null 2>&1 ||
                _lk_as_pg "$bindir/pg_ctl" stop -D "$run/pg/data" -m immediate -w -t 10 >/dev/null 2>&1
        fi
        # pg_ctl returns once postmaster.pid is gone; the process itself may
        # still be exiting for a moment.
        [ -n "$pid" ] && _lk_wait_gone "$pid" 5
        if _lk_pid_is "$pid" postgres; then
            _lk_log "PostgreSQL (pid $pid) did not stop; killing it"
            for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
                kill -KILL "$child" 2>/dev/null
            done
            kill -KILL "$pid" 2>/dev/null
            _lk_wait_gone "$pid" 5
        fi
    fi

    # Redis: SIGTERM (nothing to save), then SIGKILL.
    if [ -s "$run/redis/redis.pid" ]; then
        pid=$(cat "$run/redis/redis.pid" 2>/dev/null) || pid=
        if _lk_pid_is "$pid" redis; then
            kill -TERM "$pid" 2>/dev/null
            if ! _lk_wait_gone "$pid" 10; then
                _lk_log "Redis (pid $pid) did not stop; killing it"
                kill -KILL "$pid" 2>/dev/null
                _lk_wait_gone "$pid" 5
            fi
        fi
    fi

    rm -rf -- "$run"
    return 0
}

# Stop the services started by latchkey_services_start in this shell and
# remove the run dir. Idempotent, never fails: safe in an EXIT trap.
# Optional $1: a run dir to stop instead.
latchkey_services_stop() {
    local run=${1:-${LATCHKEY_TEST_RUN_DIR:-}}
    if [ -n "$run" ]; then
        # `|| true` also switches off a caller's errexit inside _lk_stop_dir,
        # so one failing kill can't cut the cleanup short in an EXIT trap.
        _lk_stop_dir "$run" || true
        _lk_log "stopped test services and removed $run"
    fi
    if [ -z "${1:-}" ] || [ "${1:-}" = "${LATCHKEY_TEST_RUN_DIR:-}" ]; then
        unset LATCHKEY_TEST_RUN_DIR LATCHKEY_TEST_DATABASE_URL LATCHKEY_TEST_REDIS_URL
    fi
    return 0
}

# ----------------------------------------------------------------------------
# standalone use

# Where a standalone `start` records its run dir for `env` and `stop`.
_lk_state_file() {
    printf '%s\n' "${LATCHKEY_TEST_STATE_FILE:-${TMPDIR:-/tmp}/latchkey-test-services-$(id -u).current}"
}

_lk_main() {
    local cmd=${1:-} state run
    state=$(_lk_state_file)
    case "$cmd" in
        start)
            if [ -s "$state" ]; then
                run=$(cat "$state")
                if [ -d "$run" ] && [ -f "$run/env" ]; then
                    _lk_err "services are already running from $run; run '$0 stop' first (or '$0 env' to see them)"
                    return 1
                fi
                rm -f "$state"
            fi
            unset LATCHKEY_TEST_RUN_DIR
            latchkey_services_install || return 1
            # no owner pid: this process exits right away, the services stay
            latchkey_services_start standalone || return 1
            rm -f "$LATCHKEY_TEST_RUN_DIR/owner.pid"
            printf '%s\n' "$LATCHKEY_TEST_RUN_DIR" >"$state"
            cat "$LATCHKEY_TEST_RUN_DIR/env"
            ;;
        env)
            if [ -s "$state" ] && run=$(cat "$state") && [ -f "$run/env" ]; then
                cat "$run/env"
            else
                _lk_err "no standalone test services are running (start them with '$0 start')"
                return 1
            fi
            ;;
        stop)
            run=
            [ -s "$state" ] && run=$(cat "$state")
            [ -n "$run" ] || run=${LATCHKEY_TEST_RUN_DIR:-}
            if [ -z "$run" ] || [ ! -d "$run" ]; then
                _lk_log "nothing to stop"
            else
                latchkey_services_stop "$run"
            fi
            rm -f "$state"
            ;;
        ensure)
            latchkey_services_install || return 1
            latchkey_ensure_rust_tools || return 1
            ;;
        *)
            cat >&2 <<EOF
usage: $0 start|env|stop|ensure
  start   install missing packages, start PostgreSQL + Redis, print export lines
          (use: eval "\$($0 start)")
  env     print the export lines of the running services again
  stop    stop them and remove their run dir
  ensure  install missing packages (postgresql, redis-server, chromium, chromium-driver) and rustfmt/clippy
EOF
            return 2
            ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    _lk_main "$@"
    exit $?
fi
