# syntax=docker/dockerfile:1.7
#
# tanma-connector image: one static-ish binary on debian:bookworm-slim, non-root (65532), read-only
# root filesystem friendly. The only writable path the connector needs is `state.dir`
# (/var/lib/tanma, a volume / emptyDir).
#
#   docker build -t tanma-connector .
#   docker run --rm tanma-connector --help
#
# Build cache: BuildKit cache mounts keep the cargo registry and target dir between builds.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# librdkafka is built from rdkafka-sys's bundled sources with its default (make, not cmake) build;
# the `ssl` feature links the system OpenSSL, and librdkafka wants zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin tanma-connector \
 && install -D -m 0755 target/release/tanma-connector /out/tanma-connector

FROM debian:${DEBIAN_RELEASE}-slim
# libssl3: librdkafka's TLS; ca-certificates: broker CAs for ssl / sasl_ssl. Nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/tanma
COPY --from=builder /out/tanma-connector /usr/local/bin/tanma-connector
USER 65532:65532
ENV TANMA_STATE__DIR=/var/lib/tanma
VOLUME ["/var/lib/tanma"]
# 9464: /metrics, /health, /ready. 18080: the simulator (`sim`).
EXPOSE 9464 18080
ENTRYPOINT ["/usr/local/bin/tanma-connector"]
CMD ["run", "--config", "/etc/tanma/connector.toml"]
