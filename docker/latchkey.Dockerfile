# syntax=docker/dockerfile:1
#
# latchkey — the OAuth2/JWT HTTP service — as one static binary on an empty image.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/latchkey.Dockerfile -t latchkey:dev .
#
# The build context is the repository root (.dockerignore keeps target/, .git and the
# like out). BuildKit is required (cache mounts); it is the default builder since
# Docker 23. Multi-arch works natively: on linux/arm64 the same file builds for
# aarch64-unknown-linux-musl (e.g. `docker buildx build --platform linux/arm64 ...`).
#
# Stages:
#   build  — rust on Alpine: a native *-unknown-linux-musl toolchain, so the host
#            target already is the static target and Alpine's gcc + musl-dev compile
#            the C in the dependency tree for the same libc:
#              aws-lc-sys (aws-lc-rs: RS256 signing, rustls) — its `cc` builder with the
#                bindings pre-generated for x86_64/aarch64-unknown-linux-musl, so no
#                cmake, clang, Go or Perl;
#              ring (a dependency of rustls-webpki) — cc;
#              libsqlite3-sys (sqlx's SQLite backend, "bundled") — cc;
#              libmimalloc-sys (the allocator of musl builds, see service/src/main.rs) — cc.
#            Rust's musl targets link statically by default (crt-static).
#   rootfs — CA certificates, /etc/passwd and /etc/group (nonroot 65532), /tmp and the
#            data directory, assembled on plain Alpine.
#   final  — FROM scratch: no shell, no package manager. Kubernetes must run it with
#            exec-form command/args only (the Helm chart does).
#
# Rust version: the workspace's rust-version is 1.94 (sqlx 0.9 needs it); 1.95 is the
# toolchain the project's CI machine uses. Pin the base images by digest
# for release builds (e.g. --build-arg RUST_IMAGE=rust:1.95-alpine3.23@sha256:...).

ARG RUST_IMAGE=rust:1.95-alpine3.23
ARG ALPINE_IMAGE=alpine:3.23

# ---------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build

# gcc/musl-dev: C compiler and libc headers for the crates above. linux-headers: lets
# aws-lc find <linux/random.h> (getrandom), as on glibc; without it aws-lc falls back
# to getentropy(). file/binutils: docker/assert-static.sh (file(1), readelf).
# Package versions are not pinned: Alpine drops superseded versions from its mirrors,
# so a pin breaks the build within weeks; the base image tag fixes the Alpine release.
# hadolint ignore=DL3018
RUN apk add --no-cache gcc musl-dev linux-headers file binutils

COPY docker/assert-static.sh /usr/local/bin/assert-static

WORKDIR /src
COPY . .

# strip=debuginfo: the std debug info goes, symbol names stay (readable backtraces).
ENV CARGO_TARGET_DIR=/cargo-target \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Cache mounts: the cargo registry/git checkouts (shared by both Dockerfiles) and
# the target directory (per platform; both binaries share the compiled dependencies).
# `sharing=locked` serialises concurrent builds instead of corrupting the caches.
# The target dir is a cache mount, so the binary is copied out in the same step.
ARG TARGETPLATFORM
RUN --mount=type=cache,id=latchkey-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=latchkey-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=latchkey-target-${TARGETPLATFORM},target=/cargo-target,sharing=locked \
    set -eux; \
    target="$(rustc --print host-tuple)"; \
    case "$target" in \
        x86_64-unknown-linux-musl|aarch64-unknown-linux-musl) ;; \
        *) echo "unsupported build host $target (expected a *-unknown-linux-musl rustc)" >&2; exit 1 ;; \
    esac; \
    cargo build --release --locked -p latchkey --bin latchkey --target "$target"; \
    install -D -m 0755 "/cargo-target/$target/release/latchkey" /out/latchkey

# Static or fail: no ELF interpreter, no DT_NEEDED (`ldd` is no test here: for a
# static-pie binary musl's ldd prints the loader and exits 0). Then run it once.
RUN assert-static /out/latchkey && /out/latchkey --version

# ---------------------------------------------------------------------------------
FROM ${ALPINE_IMAGE} AS rootfs

# hadolint ignore=DL3018
RUN set -eux; \
    apk add --no-cache ca-certificates; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/var/lib/latchkey; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    printf '%s\n' \
        'root:x:0:0:root:/root:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/var/lib/latchkey:/sbin/nologin' \
        > /rootfs/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > /rootfs/etc/group; \
    chmod 0644 /rootfs/etc/passwd /rootfs/etc/group /rootfs/etc/ssl/certs/ca-certificates.crt; \
    chmod 1777 /rootfs/tmp; \
    chown 65532:65532 /rootfs/var/lib/latchkey; \
    chmod 0700 /rootfs/var/lib/latchkey

# ---------------------------------------------------------------------------------
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/latchkey

LABEL org.opencontainers.image.title="latchkey" \
      org.opencontainers.image.description="Latchkey OAuth 2.0 / OpenID Connect authorization server issuing RS256 JWT access tokens" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=rootfs /rootfs/ /
COPY --from=build /out/latchkey /usr/local/bin/latchkey

# LATCHKEY_DATA_DIR: development mode (no DATABASE_URL) keeps its SQLite file and keys
# in a directory the nonroot user owns; in Kubernetes the chart sets DATABASE_URL and
# mounts the keys, and may mount an emptyDir here under readOnlyRootFilesystem.
# SSL_CERT_FILE: the trust store for `latchkey audit --url` and SMTP over TLS.
ENV LATCHKEY_LISTEN=0.0.0.0:8080 \
    LATCHKEY_LOG_FORMAT=json \
    LATCHKEY_DATA_DIR=/var/lib/latchkey \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
EXPOSE 8080

# No CMD: `latchkey` alone serves; `args: ["migrate"]` etc. select a subcommand.
ENTRYPOINT ["/usr/local/bin/latchkey"]
