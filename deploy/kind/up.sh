#!/usr/bin/env bash
# deploy/kind/up.sh — Latchkey on a local kind cluster, end to end:
#
#   1. create the kind cluster `latchkey` (1 control plane + 2 workers; kept if it exists)
#   2. build the images latchkey:dev and latchkey-operator:dev (docker/*.Dockerfile)
#   3. load them into the cluster's nodes (`kind load docker-image`; nothing is pushed)
#   4. create the namespace `latchkey` with Pod Security "restricted" enforced
#   5. install development PostgreSQL 17 and Redis 7 (deploy/kind/dependencies.yaml),
#      with random passwords generated here into Secrets (kept across re-runs)
#   6. write the Secrets the chart reads: latchkey-database and latchkey-redis (key url)
#   7. `helm upgrade --install latchkey charts/latchkey ... --wait`
#   8. apply examples/oauthclient-*.yaml and wait until the operator reports them Ready
#      and has written the credentials Secret of the client_credentials example
#   9. run deploy/kind/smoke.sh (a client_credentials token, checked against JWKS)
#
# Needs on the workstation: docker (running engine, BuildKit), kind, kubectl, helm 3,
# python3 (smoke test), and bash >= 4. Run from anywhere; paths are resolved from this
# file. Re-running is safe: every step is idempotent (images are rebuilt, the release
# is upgraded). Tear down with deploy/kind/down.sh.
#
# Extra arguments are passed to `helm upgrade --install`, e.g.
#   deploy/kind/up.sh --set service.replicas=3
#
# Environment (defaults in brackets):
#   CLUSTER_NAME     kind cluster name [latchkey]; kubectl/helm use context kind-$CLUSTER_NAME
#   NAMESPACE        namespace for everything [latchkey]
#   TAG              image tag built, loaded and set in the chart [dev]
#   KIND_NODE_IMAGE  node image for a new cluster, e.g. kindest/node:v1.34.0 [kind's default]
#   ISSUER           the chart's `issuer` value [http://127.0.0.1:8080, i.e. what
#                    smoke.sh's port-forward serves, so discovery URLs work from here]
#   SKIP_BUILD=1     do not build; load the existing latchkey:$TAG and latchkey-operator:$TAG
#   SKIP_SMOKE=1     stop after step 8
#   HELM_TIMEOUT     helm --wait timeout [10m]
set -Eeuo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd -- "$HERE/../.." && pwd)

CLUSTER_NAME=${CLUSTER_NAME:-latchkey}
CONTEXT=kind-$CLUSTER_NAME
NAMESPACE=${NAMESPACE:-latchkey}
TAG=${TAG:-dev}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
ISSUER=${ISSUER:-http://127.0.0.1:8080}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_SMOKE=${SKIP_SMOKE:-0}
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}
RELEASE=latchkey
SERVICE_IMAGE=latchkey:$TAG
OPERATOR_IMAGE=latchkey-operator:$TAG
# The client_credentials example and the Secret the operator writes for it
# (examples/oauthclient-service.yaml: no secretName, so <name>-oauth).
SMOKE_CLIENT=reports
SMOKE_SECRET=reports-oauth

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'up.sh: error: %s\n' "$*" >&2; exit 1; }
on_error() {
    printf 'up.sh: FAILED (exit %s) at line %s: %s\n' "$1" "$2" "$3" >&2
    exit "$1"
}
trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR

# Every kubectl/helm call names the kind context: never act on whatever cluster the
# current context happens to point at.
k() { kubectl --context "$CONTEXT" "$@"; }
kn() { kubectl --context "$CONTEXT" --namespace "$NAMESPACE" "$@"; }

require_tools() {
    local missing=() tool
    for tool in docker kind kubectl helm python3; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing on PATH: ${missing[*]} (see deploy/kind/README.md)"
    [[ -f $ROOT/charts/latchkey/Chart.yaml ]] || die "no chart at $ROOT/charts/latchkey"
}

create_cluster() {
    if kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER_NAME"; then
        log "kind cluster $CLUSTER_NAME exists; reusing it"
    else
        log "creating kind cluster $CLUSTER_NAME (1 control plane, 2 workers)"
        local args=(create cluster --name "$CLUSTER_NAME" --config "$HERE/../../kind-config.yaml" --wait 180s)
        [[ -z $KIND_NODE_IMAGE ]] || args+=(--image "$KIND_NODE_IMAGE")
        kind "${args[@]}"
    fi
    k cluster-info >/dev/null || die "cannot reach the cluster through context $CONTEXT"
}

build_images() {
    if [[ $SKIP_BUILD == 1 ]]; then
        log "SKIP_BUILD=1: using the existing $SERVICE_IMAGE and $OPERATOR_IMAGE"
        docker image inspect "$SERVICE_IMAGE" "$OPERATOR_IMAGE" >/dev/null \
            || die "SKIP_BUILD=1 but $SERVICE_IMAGE / $OPERATOR_IMAGE are not in the local docker"
        return
    fi
    local version revision
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)
    revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    # Sequential on purpose: the second build reuses the dependencies the first one
    # compiled (shared BuildKit cache mounts).
    log "building $SERVICE_IMAGE (docker/latchkey.Dockerfile; the first build compiles everything and takes a while)"
    DOCKER_BUILDKIT=1 docker build -f "$ROOT/docker/latchkey.Dockerfile" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        -t "$SERVICE_IMAGE" "$ROOT"
    log "building $OPERATOR_IMAGE (docker/latchkey-operator.Dockerfile)"
    DOCKER_BUILDKIT=1 docker build -f "$ROOT/docker/latchkey-operator.Dockerfile" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        -t "$OPERATOR_IMAGE" "$ROOT"
}

load_images() {
    log "loading $SERVICE_IMAGE and $OPERATOR_IMAGE into the kind nodes"
    kind load docker-image --name "$CLUSTER_NAME" "$SERVICE_IMAGE" "$OPERATOR_IMAGE"
}

create_namespace() {
    log "namespace $NAMESPACE (Pod Security: restricted, enforced)"
    k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
    k label namespace "$NAMESPACE" --overwrite \
        pod-security.kubernetes.io/enforce=restricted \
        pod-security.kubernetes.io/enforce-version=latest \
        pod-security.kubernetes.io/warn=restricted \
        pod-security.kubernetes.io/warn-version=latest >/dev/null
}

# apply_secret NAME KEY VALUE — create or update an Opaque Secret. The value goes
# through stdin, never a command line (visible in `ps`). Values here are hex or URLs
# built from hex, so they need no YAML escaping.
apply_secret() {
    kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $1
  labels:
    app.kubernetes.io/part-of: latchkey-dev
type: Opaque
stringData:
  $2: "$3"
EOF
}

# password_secret NAME — print the `password` of Secret NAME, creating the Secret with
# 192 random bits (hex) first if it does not exist. Reused on re-runs: PostgreSQL keeps
# the password it was initialised with in its volume.
password_secret() {
    local name=$1 password
    if kn get secret "$name" >/dev/null 2>&1; then
        password=$(kn get secret "$name" -o go-template='{{index .data "password" | base64decode}}')
        [[ -n $password ]] || die "Secret $name has no password; delete it and re-run"
    else
        password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
        [[ ${#password} == 48 ]] || die "could not read /dev/urandom"
        apply_secret "$name" password "$password"
    fi
    printf '%s' "$password"
}

install_dependencies() {
    log "development PostgreSQL 17 and Redis 7 (deploy/kind/dependencies.yaml)"
    PG_PASSWORD=$(password_secret latchkey-dev-postgres)
    REDIS_PASSWORD=$(password_secret latchkey-dev-redis)
    kn apply -f "$HERE/dependencies.yaml"
    kn rollout status statefulset/postgres --timeout=5m
    kn rollout status deployment/redis --timeout=3m
}

create_latchkey_secrets() {
    log "Secrets latchkey-database and latchkey-redis (key url) for the chart"
    apply_secret latchkey-database url \
        "postgres://latchkey:${PG_PASSWORD}@postgres.${NAMESPACE}.svc:5432/latchkey?sslmode=disable"
    apply_secret latchkey-redis url \
        "redis://:${REDIS_PASSWORD}@redis.${NAMESPACE}.svc:6379/0"
}

# redis.enabled=true: use the Redis installed above (the chart's default is off).
# service.replicas=2: one pod per worker, so the topology spread is visible (needs Redis).
# Arguments given to up.sh come last and so override these.
# The image's content id (sha256:...): as a pod annotation it changes the pod template
# whenever a rebuild under the same tag changed the image, so helm rolls the pods.
image_id() {
    docker image inspect --format '{{.Id}}' "$1" | tr ':' '-'
}

install_chart() {
    log "helm upgrade --install $RELEASE charts/latchkey (waits up to $HELM_TIMEOUT)"
    helm upgrade --install "$RELEASE" "$ROOT/charts/latchkey" \
        --kube-context "$CONTEXT" --namespace "$NAMESPACE" \
        --set image.service.tag="$TAG" \
        --set image.operator.tag="$TAG" \
        --set-string issuer="$ISSUER" \
        --set redis.enabled=true \
        --set service.replicas=2 \
        --set-string "service.podAnnotations.latchkey\.dev/image-id=$(image_id "$SERVICE_IMAGE")" \
        --set-string "operator.podAnnotations.latchkey\.dev/image-id=$(image_id "$OPERATOR_IMAGE")" \
        --wait --timeout "$HELM_TIMEOUT" \
        "$@"
    kn get pods -o wide
}

apply_examples() {
    log "OAuthClient examples (examples/oauthclient-*.yaml)"
    local f
    for f in "$ROOT"/examples/oauthclient-*.yaml; do
        kn apply -f "$f"
    done
    kn wait --for=condition=Ready oauthclient --all --timeout=3m
    kn get oauthclients

    log "waiting for Secret $SMOKE_SECRET (client $SMOKE_CLIENT's credentials, written by the operator)"
    local i
    for ((i = 0; i < 60; i++)); do
        if [[ -n $(kn get secret "$SMOKE_SECRET" --ignore-not-found -o jsonpath='{.data.client_secret}') ]]; then
            return 0
        fi
        sleep 2
    done
    die "Secret $SMOKE_SECRET did not appear with a client_secret within 120s (kubectl -n $NAMESPACE describe oauthclient $SMOKE_CLIENT)"
}

main() {
    require_tools
    create_cluster
    build_images
    load_images
    create_namespace
    install_dependencies
    create_latchkey_secrets
    install_chart "$@"
    apply_examples
    if [[ $SKIP_SMOKE == 1 ]]; then
        log "SKIP_SMOKE=1: done (run deploy/kind/smoke.sh to test)"
    else
        log "smoke test"
        CONTEXT=$CONTEXT NAMESPACE=$NAMESPACE SECRET=$SMOKE_SECRET "$HERE/smoke.sh"
    fi
    log "Latchkey is up in kind cluster $CLUSTER_NAME (context $CONTEXT), namespace $NAMESPACE"
    printf '    smoke test again:  %s/smoke.sh\n    reach the API:     kubectl --context %s -n %s port-forward svc/%s 8080:<service port>\n    tear down:         %s/down.sh\n' \
        "$HERE" "$CONTEXT" "$NAMESPACE" "$RELEASE" "$HERE" >&2
}

main "$@"
