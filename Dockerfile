# Multi-stage build: compile with the Rust toolchain, ship a slim Debian runtime.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY conformance ./conformance
COPY migrations ./migrations
COPY config ./config
COPY src ./src
RUN cargo build --release --locked --bin berth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/berth --create-home berth
COPY --from=build /src/target/release/berth /usr/local/bin/berth
USER berth
WORKDIR /var/lib/berth
VOLUME /var/lib/berth
EXPOSE 5000
# Listening on every interface needs identities (or BERTH_AUTH_ENABLED=false with
# --allow-open-network); pass BERTH_ADMIN_PASSWORD once to create the first administrator.
ENV BERTH_DATA_DIR=/var/lib/berth BERTH_LISTEN=0.0.0.0:5000 BERTH_AUTH_ENABLED=true
ENTRYPOINT ["berth"]
CMD ["serve"]
