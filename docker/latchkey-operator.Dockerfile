# syntax=docker/dockerfile:1
#
# latchkey-operator — the Kubernetes operator (OAuthClient, SigningKey) — as one
# static binary on an empty image.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/latchkey-operator.Dockerfile -t latchkey-operator:dev .
#
# Same structure, base images and toolchain as docker/latchkey.Dockerfile (read its
# header for the reasons); the two share the cargo registry and target caches, so the
# second build only compiles what differs. Keep the two files in step.
#
# Stages: build (rust on Alpine, *-unknown-linux-musl, static) -> rootfs (CA
# certificates, nonroot 65532) -> FROM scratch. No shell in the final image: exec-form
# command/args only.
#
# Rust version: the workspace's rust-version is 1.94 (sqlx 0.9 needs it); 1.95 is
# what CI uses.

ARG RUST_IMAGE=rust:1.95-alpine3.23
ARG ALPINE_IMAGE=alpine:3.23

# ---------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build

# gcc/musl-dev: C compiler and libc headers for aws-lc-sys, ring, libsqlite3-sys
# (bundled SQLite; the shared store crate enables it) and libmimalloc-sys. linux-headers: lets
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
    cargo build --release --locked -p latchkey-operator --bin latchkey-operator --target "$target"; \
    install -D -m 0755 "/cargo-target/$target/release/latchkey-operator" /out/latchkey-operator

# Static or fail: no ELF interpreter, no DT_NEEDED (`ldd` is no test here: for a
# static-pie binary musl's ldd prints the loader and exits 0). Then run it once.
RUN assert-static /out/latchkey-operator && /out/latchkey-operator --version

# ---------------------------------------------------------------------------------
FROM ${ALPINE_IMAGE} AS rootfs

# The operator keeps no files: no data directory. CA certificates are here for
# completeness (it talks to the API server with the cluster CA from its service
# account, and to PostgreSQL).
# hadolint ignore=DL3018
RUN set -eux; \
    apk add --no-cache ca-certificates; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    printf '%s\n' \
        'root:x:0:0:root:/root:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' \
        > /rootfs/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > /rootfs/etc/group; \
    chmod 0644 /rootfs/etc/passwd /rootfs/etc/group /rootfs/etc/ssl/certs/ca-certificates.crt; \
    chmod 1777 /rootfs/tmp

# ---------------------------------------------------------------------------------
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/latchkey

LABEL org.opencontainers.image.title="latchkey-operator" \
      org.opencontainers.image.description="Kubernetes operator for Latchkey: OAuthClient and SigningKey controllers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=rootfs /rootfs/ /
COPY --from=build /out/latchkey-operator /usr/local/bin/latchkey-operator

# LATCHKEY_OPERATOR_LISTEN: /healthz, /readyz and /metrics must be reachable from the
# kubelet and Prometheus (the binary's own default is 127.0.0.1:8081).
ENV LATCHKEY_OPERATOR_LISTEN=0.0.0.0:8081 \
    LATCHKEY_LOG_FORMAT=json \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
EXPOSE 8081

ENTRYPOINT ["/usr/local/bin/latchkey-operator"]
