# Berth's container image: a slim Debian runtime running `berth serve` as the non-root user
# `berth`, with its data in the volume /var/lib/berth.
#
# With internet, from source (the last stage, `image`, is the default target):
#   docker build -t berth .
# Offline, around a binary built on the host (BuildKit skips the Rust stage it does not need):
#   cargo build --release --locked --bin berth
#   DOCKER_BUILDKIT=1 docker build --target prebuilt -t berth .
# (`--build-arg BERTH_BINARY=target/debug/berth` takes the debug build instead: the tests do,
# which spares them a release build.)
# No stage of this file reaches the network except the Rust build (crates.io) and the pulls of
# the two base images; tests/clients/run.sh (group `image`) builds the prebuilt target offline
# on a debian:bookworm-slim made locally with mmdebstrap.
# The Rust stage comes after `prebuilt` so that the legacy builder (DOCKER_BUILDKIT=0), which
# runs every stage up to the target, builds `--target prebuilt` offline too.

# ---- runtime: the base every image below shares (no package installs: nothing to download)
FROM debian:bookworm-slim AS runtime
RUN useradd --system --user-group --home-dir /var/lib/berth --no-create-home \
      --shell /usr/sbin/nologin berth \
 && install -d -o berth -g berth -m 0750 /var/lib/berth
WORKDIR /var/lib/berth
VOLUME /var/lib/berth
EXPOSE 5000
# Listening on every interface needs identities (or BERTH_AUTH_ENABLED=false with
# --allow-open-network); pass BERTH_ADMIN_PASSWORD once to create the first administrator.
ENV BERTH_DATA_DIR=/var/lib/berth BERTH_LISTEN=0.0.0.0:5000 BERTH_AUTH_ENABLED=true
ENTRYPOINT ["berth"]
CMD ["serve"]

# ---- prebuilt: the binary from the host's `cargo build --release` (glibc of bookworm or
# older). Root certificates (HTTPS to S3, Azure, GCS) come from the base: the one the tests
# make carries ca-certificates; Docker Hub's debian:bookworm-slim does not, so build from
# source (the default target) when Berth's blob store is reached over HTTPS.
FROM runtime AS prebuilt
ARG BERTH_BINARY=target/release/berth
COPY ${BERTH_BINARY} /usr/local/bin/berth
USER berth

# ---- build: compile from source with the Rust toolchain
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY conformance ./conformance
COPY migrations ./migrations
COPY config ./config
COPY src ./src
RUN cargo build --release --locked --bin berth

# ---- image (default): the runtime with the binary and root certificates from the build stage
FROM runtime AS image
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/berth /usr/local/bin/berth
USER berth
