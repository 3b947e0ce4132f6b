#!/usr/bin/env bash
# Build Latchkey's container images without Docker: static musl binaries and one OCI
# image archive per image, which containerd imports (`ctr -n k8s.io images import`).
# The Dockerfiles beside this script stay the path for people with Docker; the config
# of the latchkey and latchkey-operator archives is read from their final stage
# (docker/oci-image.py), and testkit/tests/images.rs checks the two agree.
#
#   docker/build-images.sh                       build (or reuse) all four archives
#   docker/build-images.sh | while read -r name digest archive; do
#       ctr -n k8s.io images import "$archive"; done
#
# Images (fully qualified: an unqualified `latchkey:dev` in a pod spec means
# docker.io/library/latchkey:dev):
#   $PREFIX/latchkey:$TAG           the service, as docker/latchkey.Dockerfile
#   $PREFIX/latchkey-operator:$TAG  the operator, as docker/latchkey-operator.Dockerfile
#   $PREFIX/latchkey-pause:$TAG     the pod sandbox image of the test node (docker/pause.c)
#   $PREFIX/latchkey-caller:$TAG    test pods: Debian's static busybox, every applet
#                                   linked in /bin (sh, wget --post-data/--header, cat,
#                                   sleep, ...), uid 65532, CMD ["/bin/sh"]
#
# Output: the archives go to $OUT/<stamp>/<image>.oci.tar, with images.txt listing
# them. stdout is exactly images.txt: one line per image, in the order above,
#   NAME DIGEST ARCHIVE
# e.g. `docker.io/library/latchkey:dev sha256:1f0c... /root/.cache/latchkey/images/9a3e.../latchkey.oci.tar`.
# DIGEST is the manifest digest (what `ctr images ls` shows as DIGEST). Progress goes
# to stderr. Same inputs give the same bytes, so the same digests.
#
# Cache: <stamp> hashes the inputs (every file git knows under the crates but their tests/, migrations,
# docker/, Cargo.toml/Cargo.lock; rustc -vV; the versions of the Debian packages used;
# TAG, PREFIX, SOURCE_DATE_EPOCH). When $OUT/<stamp>/images.txt exists the build is
# skipped (~0.1 s); a changed input builds a new directory next to the old ones.
# Cargo's target dir is $CACHE/images-target, outside the checkout, so a fresh clone
# reuses the compiled dependencies.
#
# Needs: bash, git, cargo/rustup, python3 and Debian's musl-tools, busybox-static,
# ca-certificates, binutils, file; installs the missing ones with apt-get (as root) and
# the musl target with rustup.
#
# Environment:
#   LATCHKEY_CACHE_DIR      cache root (default $HOME/.cache/latchkey)
#   LATCHKEY_IMAGES_OUT     output root (default $LATCHKEY_CACHE_DIR/images)
#   LATCHKEY_IMAGES_TAG     image tag and org.opencontainers.image.version (default dev)
#   LATCHKEY_IMAGES_PREFIX  repository prefix (default docker.io/library)
#   LATCHKEY_IMAGES_FORCE=1 rebuild even when the stamp matches
#   SOURCE_DATE_EPOCH       mtime of every file and the config's `created` (default 0)
set -euo pipefail

NAME=docker/build-images.sh
log() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap
trap 'rc=$?; log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"; exit $rc' ERR

[[ $# -eq 0 ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 64; }

HERE=$(cd -P "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}
OUT_ROOT=${LATCHKEY_IMAGES_OUT:-$CACHE/images}
TAG=${LATCHKEY_IMAGES_TAG:-dev}
PREFIX=${LATCHKEY_IMAGES_PREFIX:-docker.io/library}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
TARGET=x86_64-unknown-linux-musl
IMAGES=(latchkey latchkey-operator latchkey-pause latchkey-caller)

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 hosts are supported (the archives say amd64)"

# --- tools ------------------------------------------------------------------------
# command -> Debian package that provides it
declare -A NEEDS=(
  [musl-gcc]=musl-tools [readelf]=binutils [file]=file [python3]=python3 [git]=git
  [/bin/busybox]=busybox-static [/usr/share/ca-certificates/mozilla]=ca-certificates
)
missing=()
for tool in "${!NEEDS[@]}"; do
  if [[ $tool == /* ]]; then [[ -e $tool ]] || missing+=("${NEEDS[$tool]}")
  else command -v "$tool" >/dev/null 2>&1 || missing+=("${NEEDS[$tool]}")
  fi
done
# busybox-static: a dynamically linked /bin/busybox (the `busybox` package) is no use
if [[ -e /bin/busybox ]] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  missing+=(busybox-static)
fi
if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them"
  [[ $(id -u) == 0 ]] || die "missing Debian packages ${missing[*]}: apt-get install them (needs root)"
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || die "no cargo on PATH: install Rust (rustup)"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "adding the $TARGET target"
  rustup target add "$TARGET" >&2
fi

# --- stamp ------------------------------------------------------------------------
sha256() { sha256sum | cut -d' ' -f1; }
pkg_versions() { dpkg-query -W -f='${Package} ${Version}\n' musl-tools musl-dev busybox-static ca-certificates 2>/dev/null || true; }
stamp_inputs() {
  # Paths are relative to the repository, so every clone computes the same stamp.
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard -- \
      Cargo.toml Cargo.lock crds domain operator service store migrations docker \
      ':(exclude)*/tests/*' ':(exclude)*/benches/*' \
    | sort -z | while IFS= read -r -d '' f; do
        [[ -f $f ]] && printf '%s  %s\n' "$(sha256 < "$f")" "$f"
      done)
  rustc -vV
  pkg_versions
  python3 -c 'import sys, zlib; print(sys.version.split()[0], zlib.ZLIB_RUNTIME_VERSION)'
  printf 'tag=%s prefix=%s epoch=%s\n' "$TAG" "$PREFIX" "$SOURCE_DATE_EPOCH"
}
STAMP=$(stamp_inputs | sha256)
OUT=$OUT_ROOT/${STAMP:0:16}

images_complete() {
  [[ -f $OUT/images.txt && "$(cat "$OUT/stamp" 2>/dev/null)" == "$STAMP" ]] || return 1
  local _name _digest archive
  while read -r _name _digest archive; do [[ -f $archive ]] || return 1; done < "$OUT/images.txt"
}
if [[ ${LATCHKEY_IMAGES_FORCE:-0} != 1 ]] && images_complete; then
  log "cached: $OUT (stamp ${STAMP:0:12})"
  cat "$OUT/images.txt"
  exit 0
fi
mkdir -p "$OUT_ROOT"
exec 9>"$OUT_ROOT/.lock"
log "waiting for build lock $OUT_ROOT/.lock"
flock 9
if [[ ${LATCHKEY_IMAGES_FORCE:-0} != 1 ]] && images_complete; then
  log "cached: $OUT (built by a concurrent run)"
  cat "$OUT/images.txt"
  exit 0
fi
WORK=$(mktemp -d "$OUT_ROOT/.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- binaries ---------------------------------------------------------------------
# As the Dockerfiles' build stage: release profile, debuginfo stripped, no incremental.
# Both binaries in one cargo run: they share the compiled dependencies. Measured cold:
# 48 min on 2 cores shared with two other builds (load 8-10), 8 min on idle ones; warm:
# a cargo no-op. Changing CC_*/AR_* (or rustc) rebuilds the C crates and everything
# above them: keep these exports as they are.
log "building latchkey + latchkey-operator for $TARGET (release; cold: 8-50 min on 2 cores)"
(
  cd "$ROOT"
  export CARGO_TARGET_DIR=$CACHE/images-target CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
  export CARGO_PROFILE_RELEASE_STRIP=debuginfo
  export CC_x86_64_unknown_linux_musl=musl-gcc AR_x86_64_unknown_linux_musl=ar
  nice -n 10 cargo build --release --locked --target "$TARGET" \
    -p latchkey --bin latchkey -p latchkey-operator --bin latchkey-operator
) >&2
mkdir -p "$WORK/bin"
for bin in latchkey latchkey-operator; do
  install -m 0755 "$CACHE/images-target/$TARGET/release/$bin" "$WORK/bin/$bin"
done
log "building pause"
musl-gcc -static -Os -s -Wall -Wextra -Werror -o "$WORK/bin/pause" "$HERE/pause.c"
install -m 0755 /bin/busybox "$WORK/bin/busybox"
"$HERE/assert-static.sh" "$WORK"/bin/* >&2
for bin in latchkey latchkey-operator; do "$WORK/bin/$bin" --version >&2; done

# --- the shared files -------------------------------------------------------------
# The CA bundle is every certificate of Debian's ca-certificates package, in name
# order: the package's content, not this machine's /etc/ssl/certs (which may hold
# local additions).
find /usr/share/ca-certificates/mozilla -name '*.crt' -print0 | LC_ALL=C sort -z \
  | xargs -0 cat > "$WORK/ca-certificates.crt"
[[ -s $WORK/ca-certificates.crt ]] || die "no certificates in /usr/share/ca-certificates/mozilla"
# /etc/passwd and /etc/group: the lines of the Dockerfiles' rootfs stages (the test
# checks each line is in the Dockerfile).
passwd() { printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' "nonroot:x:65532:65532:nonroot:$1:/sbin/nologin" > "$WORK/$2"; }
passwd /var/lib/latchkey passwd.latchkey
passwd /nonexistent passwd.nonexistent
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > "$WORK/group"
ROOTFS=(
  --file "$WORK/ca-certificates.crt:etc/ssl/certs/ca-certificates.crt:0644:0:0"
  --file "$WORK/group:etc/group:0644:0:0"
  --dir tmp:1777:0:0
)

# --- archives ---------------------------------------------------------------------
oci() { python3 "$HERE/oci-image.py" --out "$WORK/$1.oci.tar" --name "$PREFIX/$1:$TAG" "${@:2}"; }
oci latchkey --dockerfile "$HERE/latchkey.Dockerfile" --build-arg "VERSION=$TAG" "${ROOTFS[@]}" \
  --file "$WORK/passwd.latchkey:etc/passwd:0644:0:0" \
  --dir var/lib/latchkey:0700:65532:65532 \
  --file "$WORK/bin/latchkey:usr/local/bin/latchkey:0755:0:0" > "$WORK/digests"
oci latchkey-operator --dockerfile "$HERE/latchkey-operator.Dockerfile" --build-arg "VERSION=$TAG" "${ROOTFS[@]}" \
  --file "$WORK/passwd.nonexistent:etc/passwd:0644:0:0" \
  --file "$WORK/bin/latchkey-operator:usr/local/bin/latchkey-operator:0755:0:0" >> "$WORK/digests"
# The pause image runs as 65535, like the upstream pause image; kubelet and the CRI
# give the sandbox the pod's own user when the pod sets one.
oci latchkey-pause --entrypoint '["/pause"]' --user 65535:65535 \
  --label org.opencontainers.image.title=latchkey-pause \
  --label "org.opencontainers.image.version=$TAG" \
  --file "$WORK/bin/pause:pause:0755:0:0" >> "$WORK/digests"
applets=()
while read -r applet; do
  [[ $applet == busybox ]] || applets+=(--symlink "busybox:bin/$applet")
done < <("$WORK/bin/busybox" --list | LC_ALL=C sort -u)
oci latchkey-caller --cmd '["/bin/sh"]' --user 65532:65532 --env PATH=/bin \
  --label org.opencontainers.image.title=latchkey-caller \
  --label "org.opencontainers.image.version=$TAG" "${ROOTFS[@]}" \
  --file "$WORK/passwd.nonexistent:etc/passwd:0644:0:0" \
  --file "$WORK/bin/busybox:bin/busybox:0755:0:0" "${applets[@]}" >> "$WORK/digests"

# --- install ----------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
i=0
while read -r name digest; do
  mv "$WORK/${IMAGES[$i]}.oci.tar" "$OUT/${IMAGES[$i]}.oci.tar"
  printf '%s %s %s\n' "$name" "$digest" "$OUT/${IMAGES[$i]}.oci.tar"
  i=$((i + 1))
done < "$WORK/digests" > "$WORK/images.txt"
mv "$WORK/images.txt" "$OUT/images.txt"
printf '%s\n' "$STAMP" > "$OUT/stamp"
log "built in ${SECONDS}s: $OUT"
cat "$OUT/images.txt"
