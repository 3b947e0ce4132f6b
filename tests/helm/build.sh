#!/usr/bin/env bash
# Build the real `helm` CLI from its Go module, for Latchkey's chart tests.
# Needs only Go (>= 1.25) and coreutils; no Docker.
#
#   HELM=$(tests/helm/build.sh | tail -1)/helm
#   "$HELM" version
#
# Next to helm it also puts the real ServiceMonitor CRD
# (monitoring.coreos.com_servicemonitors.yaml, from the prometheus-operator Go
# module's example/prometheus-operator-crd/; a 4 MB zip, checksum pinned below), so
# the chart's ServiceMonitor can be dry-run against a real API server.
#
# The binary goes to ${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}/helm/<version>/bin,
# sharing Go's module/build caches with tests/controlplane/build.sh, so other
# clones reuse it. The build is skipped when the binary exists and the stamp
# (sha256 of go.mod, go.sum, this script and tests/lib/gobuild.sh) matches. Progress goes to stderr;
# the only stdout line is the bin dir.
#
# Environment:
#   LATCHKEY_CACHE_DIR  cache root (default $HOME/.cache/latchkey)
#   GO                  go command to use (default: go on PATH, else /usr/local/go/bin/go)
#   LATCHKEY_HELM_FORCE=1  rebuild even when the stamp matches
set -euo pipefail

# Pinned version; must agree with go.mod (checked below).
HELM_VERSION=v3.19.5
# The prometheus-operator release whose ServiceMonitor CRD the chart tests apply, and the
# go.sum-style hash of its module zip (go mod download verifies against it).
PROM_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROM_OPERATOR_VERSION=v0.85.0
PROM_OPERATOR_SUM=h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=
SERVICEMONITOR_CRD=monitoring.coreos.com_servicemonitors.yaml

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GB_NAME=helm/build.sh
GB_OUT_DIR=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}/helm/$HELM_VERSION
GB_FORCE=${LATCHKEY_HELM_FORCE:-0}
gb_complete() { [[ -x "$1/helm" && -f "$1/$SERVICEMONITOR_CRD" ]]; }
# shellcheck source=tests/lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"

gb_stamp "$HERE/go.mod" "$HERE/go.sum" "$HERE/build.sh"
gb_exit_if_cached
gb_setup_go

got=$(cd "$HERE" && "$GO" list -m -f '{{.Version}}' helm.sh/helm/v3)
[[ "$got" == "$HELM_VERSION" ]] || die "go.mod pins helm $got but build.sh says $HELM_VERSION"

gb_tmp_bin
TMP_BIN=$GB_TMP_BIN

log "downloading modules"
(cd "$HERE" && "$GO" mod download) >&2
# The Kubernetes version `helm template` and `helm lint` assume (.Capabilities.KubeVersion,
# checked against Chart.yaml's kubeVersion), derived from client-go the way helm's
# Makefile does: v0.34.x -> 1.34. Without these flags helm assumes v1.20.0.
client_go=$(cd "$HERE" && "$GO" list -m -f '{{.Version}}' k8s.io/client-go)
[[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || die "unexpected k8s.io/client-go version $client_go"
KUBE_MINOR=${BASH_REMATCH[1]}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$KUBE_MINOR"
done
log "building helm $HELM_VERSION for Kubernetes 1.$KUBE_MINOR (cold: a few minutes on 2 cores)"
(cd "$HERE" && "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$TMP_BIN/helm" helm.sh/helm/v3/cmd/helm) >&2

log "fetching the ServiceMonitor CRD from $PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION"
# Outside any module (GOFLAGS=-mod=readonly only applies inside one); the sum is
# checked against the pin above as well as by the checksum database.
prom_json=$(cd "$TMP_BIN" && GOFLAGS='' "$GO" mod download -json \
    "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION")
prom_sum=$(printf '%s\n' "$prom_json" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')
[[ "$prom_sum" == "$PROM_OPERATOR_SUM" ]] \
  || die "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION has sum '$prom_sum', want $PROM_OPERATOR_SUM"
prom_dir=$(printf '%s\n' "$prom_json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
crd_src=$prom_dir/example/prometheus-operator-crd/$SERVICEMONITOR_CRD
[[ -f "$crd_src" ]] || die "no $crd_src in the module"
install -m 644 "$crd_src" "$TMP_BIN/$SERVICEMONITOR_CRD"
grep -q '^  name: servicemonitors.monitoring.coreos.com$' "$TMP_BIN/$SERVICEMONITOR_CRD" \
  || die "$crd_src is not the ServiceMonitor CRD"

out=$("$TMP_BIN/helm" version --short 2>&1)
[[ "$out" == "$HELM_VERSION"* ]] || die "helm version --short printed: $out"
probe=$(mktemp -d)
mkdir -p "$probe/chart/templates"
printf 'apiVersion: v2\nname: probe\nversion: 0.0.0\n' > "$probe/chart/Chart.yaml"
printf 'kube: {{ .Capabilities.KubeVersion.Version }}\n' > "$probe/chart/templates/v.yaml"
out=$(HOME=$probe "$TMP_BIN/helm" template "$probe/chart" 2>&1) || true
rm -rf "$probe"
[[ "$out" == *"kube: v1.$KUBE_MINOR.0"* ]] || die "helm template assumes another Kubernetes: $out"

gb_install
