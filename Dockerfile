# syntax=docker/dockerfile:1.7
#
# tanma-connector image: one binary on debian:bookworm-slim, non-root (65532), read-only root
# filesystem friendly. The only writable path the connector needs is `state.dir`
# (/var/lib/tanma, a volume / emptyDir).
#
#   docker build -t registry.example.com/tanma-connector:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#   docker run --rm registry.example.com/tanma-connector:0.1.0 --help
#   docker push registry.example.com/tanma-connector:0.1.0   # then helm install with image.repository/tag
#
# Build cache: BuildKit cache mounts keep the cargo registry and target dir between builds.
# Linted by hadolint in scripts/validate-deploy.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# librdkafka is built from rdkafka-sys's bundled sources with its default (make, not cmake) build,
# with the codecs of Cargo.toml's rdkafka features: gzip (zlib1g-dev), zstd (zstd-sys, built from
# its vendored sources), lz4 and snappy (built into librdkafka). The `ssl` feature links the
# system OpenSSL. Debian's stable packages are not pinned: the base image tag pins the release.
# hadolint ignore=DL3008
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
# OCI image annotations (https://specs.opencontainers.org/image-spec/annotations/); pass the
# version, commit and build time as build arguments.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="tanma-connector" \
      org.opencontainers.image.description="Polls the Tanma SCRM customer API and publishes exactly-once Avro change events to Kafka." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/OPERATIONS.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"
# libssl3: librdkafka's TLS; ca-certificates: broker CAs for ssl / sasl_ssl; zlib1g (gzip) is
# already in the base image. Nothing else.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/tanma
COPY --from=builder /out/tanma-connector /usr/local/bin/tanma-connector
# The build checks itself: the librdkafka client configurations with every codec users configure.
RUN for codec in gzip snappy lz4 zstd; do \
      printf '{"api": {"base_url": "http://127.0.0.1:9", "app_id": "image"}, "kafka": {"properties": {"compression.type": "%s"}}, "ops": {"listen": ""}}' \
        "$codec" > /tmp/check.json \
      && TANMA_API__APP_KEY=image /usr/local/bin/tanma-connector check-config --offline --config /tmp/check.json \
      || exit 1; \
    done \
 && rm /tmp/check.json
USER 65532:65532
ENV TANMA_STATE__DIR=/var/lib/tanma
VOLUME ["/var/lib/tanma"]
# 9464: /metrics, /health, /ready. 18080: the simulator (`sim`).
EXPOSE 9464 18080
ENTRYPOINT ["/usr/local/bin/tanma-connector"]
CMD ["run", "--config", "/etc/tanma/connector.toml"]
