#!/usr/bin/env bash
# Installs the pinned Schemathesis (PyPI) into its own virtualenv under the cache dir and
# prints the path of its `st` executable on the last line of stdout. Idempotent: a venv
# that already holds this version is reused (one `st --version`, well under a second).
#
#   tests/scripts/schemathesis.sh            install if needed, print the path
#   LATCHKEY_SCHEMATHESIS_VERSION=x.y.z ...  another version (its own venv)
#
# ./test.sh calls it in its tools step, and service/tests/schemathesis.rs calls it too,
# so `cargo test` alone installs what it runs. Any failure exits non-zero with the
# reason on stderr: the test then fails, it never skips.
set -euo pipefail

VERSION=${LATCHKEY_SCHEMATHESIS_VERSION:-4.32.5}
CACHE=${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}
VENV=$CACHE/schemathesis/$VERSION
ST=$VENV/bin/st

log() { printf '[schemathesis] %s\n' "$*" >&2; }

# `.complete` is written last: an interrupted install never looks usable.
installed() {
    [ -f "$VENV/.complete" ] && [ -x "$ST" ]
}

if ! installed; then
    PYTHON=${LATCHKEY_PYTHON:-python3}
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        log "ERROR: $PYTHON is missing; Schemathesis needs Python 3.10 or newer"
        exit 1
    fi
    log "installing schemathesis $VERSION into $VENV"
    rm -rf -- "$VENV"
    mkdir -p "$(dirname -- "$VENV")"
    if ! "$PYTHON" -m venv "$VENV" >&2 \
        || ! "$VENV/bin/python" -m pip install --quiet "schemathesis==$VERSION" >&2; then
        rm -rf -- "$VENV"
        log "ERROR: pip install schemathesis==$VERSION failed"
        exit 1
    fi
    if ! "$ST" --version 2>/dev/null | grep -qF "$VERSION"; then
        rm -rf -- "$VENV"
        log "ERROR: $ST does not report version $VERSION"
        exit 1
    fi
    touch "$VENV/.complete"
fi
printf '%s\n' "$ST"
