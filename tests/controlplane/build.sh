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

log() { printf 'controlplane/build.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
trap 'rc=$?; log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"; exit $rc' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}
CP_DIR=$CACHE_ROOT/controlplane/$K8S_VERSION
BIN_DIR=$CP_DIR/bin
STAMP_FILE=$CP_DIR/stamp
BINARIES=(kube-apiserver kubectl etcd)

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
  else shasum -a 256 | cut -d' ' -f1
  fi
}
# Content only (no paths), so every clone of the repo computes the same stamp.
STAMP=$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/etcd/go.mod" "$HERE/etcd/go.sum" \
            "$HERE/build.sh" | sha256)

up_to_date() {
  [[ "${LATCHKEY_CONTROLPLANE_FORCE:-0}" != 1 ]] || return 1
  [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

if up_to_date; then
  log "cached: $BIN_DIR (stamp ${STAMP:0:12})"
  printf '%s\n' "$BIN_DIR"
  exit 0
fi

mkdir -p "$CP_DIR"
# Serialize concurrent builds (e.g. parallel test jobs) when flock exists.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CP_DIR/.lock"
  log "waiting for build lock $CP_DIR/.lock"
  flock 9
  if up_to_date; then   # another process finished the build meanwhile
    log "cached: $BIN_DIR (built by a concurrent run)"
    printf '%s\n' "$BIN_DIR"
    exit 0
  fi
fi

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO=go
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "no 'go' on PATH and no /usr/local/go/bin/go; install Go >= 1.25 or set GO="
  fi
fi

export GOMODCACHE=$CACHE_ROOT/go/mod
export GOCACHE=$CACHE_ROOT/go/build
export CGO_ENABLED=0
export GOWORK=off           # never pick up a go.work from a parent directory
export GOFLAGS=-mod=readonly  # build exactly what go.mod/go.sum pin
unset GOOS GOARCH GOBIN
mkdir -p "$GOMODCACHE" "$GOCACHE"

log "using $("$GO" version) (GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE)"

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

TMP_BIN=$(mktemp -d "$CP_DIR/bin.tmp.XXXXXX")
trap 'rm -rf "$TMP_BIN"' EXIT
chmod 755 "$TMP_BIN"

start=$SECONDS
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

rm -rf "$BIN_DIR"
mv "$TMP_BIN" "$BIN_DIR"
printf '%s\n' "$STAMP" > "$STAMP_FILE"
log "built in $((SECONDS - start))s: $BIN_DIR"
printf '%s\n' "$BIN_DIR"
