# AniGo API image: `docker build -t anigo .`, or through compose.yaml.
#
# Two stages: a Rust toolchain that builds the release binary, and a small
# Debian runtime that only holds the binary, CA certificates and curl (for the
# health check). tests/it/deploy.rs checks the rules commented here.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when a manifest or
# Cargo.lock changes. The stub sources stand in for our crates; the two
# [[bench]] targets must exist for Cargo to read the manifest.
COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/
RUN mkdir -p src migration/src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs migration/src/lib.rs \
 && echo 'fn main() {}' > benches/resolver_cache.rs \
 && echo 'fn main() {}' > benches/throughput.rs \
 && cargo build --release --locked --bin anigo

# Our sources. COPY keeps their modification times, which can be older than
# the stub build; touching the crate roots makes Cargo rebuild our two crates.
COPY migration/src migration/src
# GraphiQL's files, compiled into the binary by src/server/graphiql.rs.
COPY assets assets
COPY src src
RUN touch src/main.rs src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked --bin anigo \
 && cp target/release/anigo /usr/local/bin/anigo

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 anigo \
 && useradd --system --uid 10001 --gid anigo --home-dir /app --shell /usr/sbin/nologin anigo \
 && install -d -o anigo -g anigo /app
COPY --from=builder /usr/local/bin/anigo /usr/local/bin/anigo

# A fixed numeric user, so orchestrators can verify it is not root. /app is
# its working directory (the embedded SQLite default writes anigo.db there).
USER 10001:10001
WORKDIR /app
# Inside a container the server must listen on every interface.
ENV BIND_ADDR=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8000/healthz || exit 1
# `anigo` serves by default; `anigo migrate up`, `anigo seed` work the same.
CMD ["anigo", "serve"]
