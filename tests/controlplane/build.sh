#!/usr/bin/env bash
# Build a real Kubernetes control plane (kube-apiserver, kubectl, etcd) from
# Go modules, for Latchkey's integration tests. Needs only Go (>= 1.25, or an
# older go with GOTOOLCHAIN=auto and the Go module proxy) and coreutils.
#
#   BIN=$(tests/controlplane/build.sh | tail -1)
#   "$BIN/kube-apiserver" --version
#
# Binaries go to ${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}/controlplane/<k8s version>/bin
# and Go's module/build caches to .../go/{mod,build}, so other clones of the
# repository reuse them. The build is skipped when all binaries exist and the
# stamp (sha256 of go.mod, go.sum, etcd/go.mod, etcd/go.sum and this script)
# matches. Progress goes to stderr; the only stdout line is the bin dir.
#
# Environment:
#   LATCHKEY_CACHE_DIR  cache root (default $HOME/.cache/latchkey)
#   GO                  go command to use (default: go on PATH, else /usr/local/go/bin/go)
#   LATCHKEY_CONTROLPLANE_FORCE=1  rebuild even when the stamp matches
set -euo pipefail

# Pinned versions. They must agree with go.mod / etcd/go.mod (checked below).
# Commit hashes and dates are those of the upstream release tags, so the
# binaries report what an official build of that tag reports.
K8S_VERSION=v1.34.12
K8S_GIT_COMMIT=26c89157669bdc7e3657302bc1abde758507095b
K8S_BUILD_DATE=2026-09-23T17:08:30Z
ETCD_VERSION=v3.6.5
ETCD_GIT_SHA=a0614505aff9b8ff469e9c59c2d979a5936d13f4   # tag v3.6.5

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BINARIES=(kube-apiserver kubectl etcd)
GB_NAME=controlplane/build.sh
GB_OUT_DIR=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}/controlplane/$K8S_VERSION
GB_FORCE=${LATCHKEY_CONTROLPLANE_FORCE:-0}
gb_complete() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$1/$b" ]] || return 1; done
}
# shellcheck source=tests/lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"

gb_stamp "$HERE/go.mod" "$HERE/go.sum" "$HERE/etcd/go.mod" "$HERE/etcd/go.sum" "$HERE/build.sh"
gb_exit_if_cached
gb_setup_go

# The pins in this script must match the modules.
got=$(cd "$HERE" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ "$got" == "$K8S_VERSION" ]] || die "go.mod pins k8s.io/kubernetes $got but build.sh says $K8S_VERSION"
got=$(cd "$HERE/etcd" && "$GO" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
[[ "$got" == "$ETCD_VERSION" ]] || die "etcd/go.mod pins etcd server $got but build.sh says $ETCD_VERSION"

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
  k8s_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitCommit=$K8S_GIT_COMMIT -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=$K8S_BUILD_DATE"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_GIT_SHA"

gb_tmp_bin
TMP_BIN=$GB_TMP_BIN

log "downloading modules (first run: a few hundred MB into $GOMODCACHE)"
(cd "$HERE" && "$GO" mod download) >&2
(cd "$HERE/etcd" && "$GO" mod download) >&2

log "building kube-apiserver + kubectl $K8S_VERSION (cold: ~10-20 min on 2 cores)"
(cd "$HERE" && "$GO" build -trimpath -ldflags "$k8s_ldflags" -o "$TMP_BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2

log "building etcd $ETCD_VERSION"
(cd "$HERE/etcd" && "$GO" build -trimpath -ldflags "$etcd_ldflags" -o "$TMP_BIN/etcd" \
    go.etcd.io/etcd/server/v3) >&2

# Sanity-check that the binaries run and report the pinned versions.
out=$("$TMP_BIN/kube-apiserver" --version 2>&1)
[[ "$out" == "Kubernetes $K8S_VERSION" ]] || die "kube-apiserver --version printed: $out"
out=$("$TMP_BIN/kubectl" version --client 2>&1)
[[ "$out" == *"Client Version: $K8S_VERSION"* ]] || die "kubectl version --client printed: $out"
out=$("$TMP_BIN/etcd" --version 2>&1)
[[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd --version printed: $out"

gb_install
