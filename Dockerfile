# syntax=docker/dockerfile:1
#
# The RustyRaft image for machines that can pull from Docker Hub and gcr.io
# (bin/docker_build makes the same image with no registry at all):
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t rustyraft:0.1.0 .
#   docker buildx build --platform linux/arm64 --load -t rustyraft:latest .
#
# The build stage runs on the builder's own platform (BUILDPLATFORM) and
# cross-compiles for the platform being built (TARGETARCH), then checks the
# binary's ELF machine before anything is packaged.

ARG RUST_VERSION=1.92

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
ARG BUILDARCH
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gcc=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gcc=gcc-aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': build linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gcc" "libc6-dev-$TARGETARCH-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$triple"; \
    echo "$triple" > /triple
# Debian names each gcc after its target, native ones included.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=rustyraft-target-$TARGETARCH \
    set -eu; \
    triple=$(cat /triple); \
    cargo build --release --locked -p raft_client --target "$triple"; \
    cp "target/$triple/release/raft_client" /raft_client; \
    machine=$(od -An -t u1 -j 18 -N 1 /raft_client | tr -d ' '); \
    case "$TARGETARCH:$machine" in \
      amd64:62 | arm64:183) ;; \
      *) echo "raft_client has ELF machine $machine, not $TARGETARCH's" >&2; exit 1 ;; \
    esac; \
    mkdir -p /data

# glibc and libgcc, and the user "nonroot" (65532); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /raft_client /usr/local/bin/raft_client
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
# Peers and clients (gRPC), then Prometheus metrics when --metrics-address is given.
EXPOSE 2379 2381
VOLUME ["/data"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/raft_client", "status", "--endpoints", "127.0.0.1:2379"]
ENTRYPOINT ["/usr/local/bin/raft_client"]
CMD ["--help"]
