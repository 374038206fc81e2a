# syntax=docker/dockerfile:1
#
# authsync container image: a static-ish Rust binary on distroless/cc (glibc, CA
# certificates, no shell, no package manager), running as UID/GID 65532.
#
#   docker build -t authsync .
#   docker volume create authsync-state
#   docker run --rm --read-only -p 9464:9464 \
#       -v ./authsync.toml:/etc/authsync/authsync.toml:ro \
#       -v authsync-state:/var/lib/authsync \
#       -e VAULT_TOKEN -e PROD_PORTAL_API_KEY authsync
#
# - Default command: `authsync run` (the daemon). One-shot: `docker run … authsync sync`.
# - The config must set [server] listen = "0.0.0.0:9464" for /metrics, /healthz and /readyz
#   to be reachable from outside the container (the built-in default is 127.0.0.1).
# - Nothing is written outside /var/lib/authsync (state.json and its fingerprint key, the
#   default `state_file` location), so the root filesystem can be read-only.
#
# The build step is the same cargo command CI runs natively (scripts/validate-deploy.sh
# checks the build context and the lock file; VALIDATE_DEPLOY_BUILD=1 runs the build itself).

# Same toolchain as the development machines and CI.
ARG RUST_VERSION=1.95.0

# ------------------------------------------------------------------ build
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# The whole workspace: cargo needs every member's manifest (tests/*) to load it, even
# though only the authsync binary is built. No OpenSSL: TLS is rustls throughout.
# make: the allocator, jemalloc (see src/main.rs), is built from source by
# tikv-jemalloc-sys (configure + make; the slim image has gcc but not make). Unpinned: a
# build tool in a throw-away stage, the version bookworm ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests

# jemalloc bakes in the page size of the build machine; arm64 kernels may use 64 KiB
# pages (4 KiB kernels run a 64 KiB build fine, not the reverse).
ARG TARGETARCH
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    if [ "$TARGETARCH" = "arm64" ]; then export JEMALLOC_SYS_WITH_LG_PAGE=16; fi \
    && cargo build --release --locked --bin authsync \
    && install -D -m 0755 target/release/authsync /out/usr/local/bin/authsync \
    && install -d -m 0700 /out/var/lib/authsync \
    && install -d -m 0755 /out/etc/authsync

# ------------------------------------------------------------------ runtime
# distroless/cc: glibc, libgcc, CA certificates, no shell; user "nonroot" is 65532.
# Same Debian release as the builder, so the binary's glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="authsync" \
      org.opencontainers.image.description="Keeps ONLYOFFICE portals' authorization keys in sync with Vault/OpenBao, AWS Secrets Manager and files" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/usr/local/bin/authsync /usr/local/bin/authsync
# Owned by the runtime user: a named volume mounted here starts with this ownership.
COPY --from=builder --chown=65532:65532 /out/var/lib/authsync /var/lib/authsync
COPY --from=builder /out/etc/authsync /etc/authsync

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENV AUTHSYNC_CONFIG=/etc/authsync/authsync.toml
VOLUME ["/var/lib/authsync"]
# /metrics, /healthz, /readyz, POST /trigger
EXPOSE 9464
# SIGTERM: the cycle in flight finishes (at most 10 s), state is saved, exit 0.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/authsync"]
CMD ["run"]
