#!/usr/bin/env bash
# Build the node components of the test cluster from Go modules: kubelet, kube-proxy,
# kube-controller-manager, kube-scheduler (k8s.io/kubernetes, node/go.mod) and CoreDNS
# (coredns/go.mod, only the plugins its Corefile uses). etcd, kube-apiserver and kubectl
# come from tests/controlplane/build.sh; containerd, runc and the CNI plugins from Debian
# (up.sh installs them).
#
#   BIN=$(tests/cluster/build.sh | tail -1)
#   "$BIN/kubelet" --version
#
# Binaries go to ${LATCHKEY_CACHE_DIR:-$HOME/.cache/latchkey}/cluster/<k8s version>/bin,
# Go's module and build caches are the ones tests/controlplane uses, so compiled packages
# the apiserver shares with the kubelet are built once. The build is skipped when every
# binary exists and the stamp (sha256 of the go.mod/go.sum/main.go/tools.go files and
# this script) matches. Progress goes to stderr; the only stdout line is the bin dir.
#
# Environment:
#   LATCHKEY_CACHE_DIR        cache root (default $HOME/.cache/latchkey)
#   GO                        go command (default: go on PATH, else /usr/local/go/bin/go)
#   LATCHKEY_CLUSTER_FORCE=1  rebuild even when the stamp matches
set -euo pipefail

# Pinned versions; they must agree with node/go.mod and coredns/go.mod (checked below).
# The commit and date are those of the upstream v1.34.12 tag, as in tests/controlplane.
K8S_VERSION=v1.34.12
K8S_GIT_COMMIT=26c89157669bdc7e3657302bc1abde758507095b
K8S_BUILD_DATE=2026-09-23T17:08:30Z
COREDNS_VERSION=v1.12.1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BINARIES=(kubelet kube-proxy kube-controller-manager kube-scheduler coredns coredns.oci.tar coredns.image)
GB_NAME=cluster/build.sh
GB_OUT_DIR=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}/cluster/$K8S_VERSION
GB_FORCE=${LATCHKEY_CLUSTER_FORCE:-0}
gb_complete() {
  local b
  for b in "${BINARIES[@]}"; do [[ -f "$1/$b" ]] || return 1; done
}
# shellcheck source=tests/lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"

gb_stamp "$HERE/node/go.mod" "$HERE/node/go.sum" "$HERE/node/tools.go" \
  "$HERE/coredns/go.mod" "$HERE/coredns/go.sum" "$HERE/coredns/main.go" "$HERE/build.sh" \
  "$HERE/../../docker/oci-image.py"
gb_exit_if_cached
gb_setup_go

got=$(cd "$HERE/node" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ "$got" == "$K8S_VERSION" ]] || die "node/go.mod pins k8s.io/kubernetes $got but build.sh says $K8S_VERSION"
got=$(cd "$HERE/coredns" && "$GO" list -m -f '{{.Version}}' github.com/coredns/coredns)
[[ "$got" == "$COREDNS_VERSION" ]] || die "coredns/go.mod pins coredns $got but build.sh says $COREDNS_VERSION"

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
  k8s_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitCommit=$K8S_GIT_COMMIT -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=$K8S_BUILD_DATE"
done

gb_tmp_bin
TMP_BIN=$GB_TMP_BIN

log "building kubelet, kube-proxy, kube-controller-manager, kube-scheduler $K8S_VERSION (cold: ~12 CPU-min)"
(cd "$HERE/node" && "$GO" build -trimpath -ldflags "$k8s_ldflags" -o "$TMP_BIN/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler) >&2

log "building coredns $COREDNS_VERSION"
(cd "$HERE/coredns" && "$GO" build -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    -o "$TMP_BIN/coredns" .) >&2

for b in kubelet kube-proxy kube-controller-manager kube-scheduler; do
  out=$("$TMP_BIN/$b" --version 2>&1)
  [[ "$out" == "Kubernetes $K8S_VERSION" ]] || die "$b --version printed: $out"
done
out=$("$TMP_BIN/coredns" -version 2>&1)
[[ "$out" == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns -version printed: $out"
out=$("$TMP_BIN/coredns" -plugins 2>&1)
for p in kubernetes cache health ready loop reload; do
  grep -qx "$p" <<<"$out" || die "coredns lacks the $p plugin; it has: $(tr '\n' ' ' <<<"$out")"
done

# CoreDNS as an image for the node (the Deployment in coredns.yaml), written by the
# project's own OCI writer; its name and digest are the archive's coredns.image line.
log "writing the coredns image archive"
python3 "$HERE/../../docker/oci-image.py" --out "$TMP_BIN/coredns.oci.tar" \
  --name "docker.io/library/latchkey-coredns:$COREDNS_VERSION" \
  --entrypoint '["/coredns"]' --user 65532:65532 \
  --label org.opencontainers.image.title=latchkey-coredns \
  --label "org.opencontainers.image.version=$COREDNS_VERSION" \
  --file "$TMP_BIN/coredns:coredns:0755:0:0" > "$TMP_BIN/coredns.image"
read -r name digest < "$TMP_BIN/coredns.image"
printf '%s %s %s\n' "$name" "$digest" "$GB_BIN_DIR/coredns.oci.tar" > "$TMP_BIN/coredns.image"

gb_install
