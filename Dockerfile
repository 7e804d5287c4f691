# syntax=docker/dockerfile:1
# Build: a Debian bookworm image with a Rust toolchain (BUILDER_IMAGE, e.g. rust:1.95-bookworm;
# the test rig builds its own from debootstrap). Run: a minimal Debian (RUNTIME_IMAGE).
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin infergate \
 && install -D target/release/infergate /out/infergate

FROM ${RUNTIME_IMAGE}
RUN useradd --system --uid 10001 --no-create-home infergate \
 && install -d -o infergate -m 0750 /var/lib/infergate/spool
COPY --from=build /out/infergate /usr/local/bin/infergate
COPY config /etc/infergate/config
WORKDIR /etc/infergate
USER infergate
# Prediction log rows wait here while PostgreSQL is away (config/compose.toml points at it).
VOLUME /var/lib/infergate/spool
EXPOSE 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["infergate", "healthcheck", "--url", "https://127.0.0.1:8443/health"]
ENTRYPOINT ["infergate"]
CMD ["serve", "--profile", "compose"]
