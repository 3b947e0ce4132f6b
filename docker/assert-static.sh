#!/bin/sh
# Fail unless every ELF file given is a static executable: no program interpreter
# (PT_INTERP) and no shared-library dependency (DT_NEEDED). Static PIE (what Rust's
# *-unknown-linux-musl targets produce) passes, as does classic static non-PIE.
#
# Used by docker/*.Dockerfile before the binary is copied onto `FROM scratch`, where
# a dynamically linked binary would fail with a confusing "no such file or directory".
# Needs readelf (binutils) and file. POSIX sh: it runs under Alpine's busybox.
#
#   docker/assert-static.sh target/x86_64-unknown-linux-musl/release/latchkey
set -eu

[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 64; }

status=0
for bin in "$@"; do
    desc=$(file -b "$bin")
    echo "$bin: $desc"
    case "$desc" in
        ELF*) ;;
        *) echo "assert-static: $bin is not an ELF file" >&2; status=1; continue ;;
    esac
    if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
        echo "assert-static: $bin has an ELF interpreter (dynamically linked):" >&2
        readelf -lW "$bin" | grep 'Requesting program interpreter' >&2
        status=1
    fi
    if readelf -dW "$bin" | grep -q '(NEEDED)'; then
        echo "assert-static: $bin needs shared libraries:" >&2
        readelf -dW "$bin" | grep '(NEEDED)' >&2
        status=1
    fi
    case "$desc" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) echo "assert-static: file(1) does not call $bin statically linked" >&2; status=1 ;;
    esac
done
exit "$status"
