#!/usr/bin/env bash
# deploy/kind/down.sh — delete the kind cluster created by deploy/kind/up.sh, with
# everything in it (Latchkey, PostgreSQL and Redis data, Secrets). The images
# latchkey:dev and latchkey-operator:dev stay in the local docker; remove them with
# `docker image rm latchkey:dev latchkey-operator:dev`. BuildKit's cargo caches stay
# too (`docker builder prune` clears them).
#
# Environment: CLUSTER_NAME [latchkey].
set -euo pipefail

CLUSTER_NAME=${CLUSTER_NAME:-latchkey}

command -v kind >/dev/null 2>&1 || { echo "down.sh: kind is not on PATH" >&2; exit 1; }

if kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER_NAME"; then
    kind delete cluster --name "$CLUSTER_NAME"
else
    echo "down.sh: no kind cluster named $CLUSTER_NAME; nothing to do" >&2
fi
