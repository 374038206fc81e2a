# syntax=docker/dockerfile:1
#
# authsync container image.
#
#   docker build -t authsync .
#   docker run --rm -v ./authsync.toml:/etc/authsync/authsync.toml:ro -p 9464:9464 authsync
#
# The config must set [server] listen = "0.0.0.0:9464" for /metrics, /healthz and /readyz
# to be reachable from outside the container. State (state.json and its fingerprint key)
# lives in the volume /var/lib/authsync, the default `state_file` location.

ARG RUST_VERSION=1

# ------------------------------------------------------------------ build
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# The whole workspace: cargo needs every member's manifest (tests/*) to resolve it, even
# though only the authsync binary is built. No OpenSSL: TLS is rustls throughout.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin authsync \
    && install -D -m 0755 target/release/authsync /out/usr/local/bin/authsync \
    && install -d -m 0750 /out/var/lib/authsync \
    && install -d -m 0755 /out/etc/authsync

# ------------------------------------------------------------------ runtime
# distroless/cc: glibc, libgcc, CA certificates, no shell; user "nonroot" is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="authsync" \
      org.opencontainers.image.description="Keeps ONLYOFFICE portals' authorization keys in sync with Vault/OpenBao, AWS Secrets Manager and files" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/usr/local/bin/authsync /usr/local/bin/authsync
COPY --from=builder --chown=65532:65532 /out/var/lib/authsync /var/lib/authsync
COPY --from=builder /out/etc/authsync /etc/authsync

USER 65532:65532
ENV AUTHSYNC_CONFIG=/etc/authsync/authsync.toml
VOLUME ["/var/lib/authsync"]
EXPOSE 9464

ENTRYPOINT ["/usr/local/bin/authsync"]
CMD ["run"]
