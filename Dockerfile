# The gateway image: one static-ish binary, the C libraries it links, its config, no shell.
#
# Two ways to get the binary (build arg BUILDER):
#   source (default)  compile in BUILDER_IMAGE, a Debian bookworm image with Rust 1.91+:
#                       docker build -t infergate .
#   host              copy prebuilt/infergate, built on a bookworm-compatible host (glibc
#                     2.36): where no toolchain can be fetched inside a build, as on an
#                     engine without a registry; scripts/deploy/images.sh gateway does it:
#                       cargo build --release --bin infergate
#                       mkdir -p prebuilt && cp target/release/infergate prebuilt/
#                       docker build --build-arg BUILDER=host \
#                         --build-arg BUILDER_IMAGE=infergate/debian:bookworm -t infergate .
# The GPU variant (compose.gpu.yml; scripts/deploy/images.sh gateway-gpu does it) is a host
# build of the `cuda` feature with the CUDA libraries it loads:
#   --build-arg BUILDER=host --build-arg PREBUILT=prebuilt/cuda/infergate \
#   --build-arg CUDA_LIBS=prebuilt/cuda/lib
# CUDA_LIBS (libcudart, cuBLAS, cuRAND from NVIDIA's wheels) go to /usr/local/lib/cuda; the
# driver's libcuda is the host's, mounted by the NVIDIA Container Toolkit.
# RUNTIME_IMAGE is `scratch`: the build stage assembles the whole filesystem. No
# `# syntax=` line, so the legacy builder (docker-compose 1.29) and BuildKit both build it
# without pulling a frontend image.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=scratch

FROM ${BUILDER_IMAGE} AS build
# The legacy builder keeps this stage as a dangling image; scripts/deploy/images.sh removes
# it by this label.
LABEL infergate.stage=build
ARG BUILDER=source
ARG PREBUILT=prebuilt/infergate
ARG CUDA_LIBS=
WORKDIR /src
COPY . .
RUN set -eu; \
    if [ "$BUILDER" = host ]; then \
        test -x "$PREBUILT" || { echo "BUILDER=host needs $PREBUILT" >&2; exit 1; }; \
        install -D -m 0755 "$PREBUILT" /out/infergate; \
    else \
        cargo build --release --locked --bin infergate; \
        install -D -m 0755 target/release/infergate /out/infergate; \
    fi
# The runtime root: the binary, the libraries `ldd` names (glibc, libgcc_s; CUDA_LIBS, when
# given, in /usr/local/lib/cuda instead), a passwd line
# for the non-root user, CA roots when the builder has them (rediss:// and Postgres TLS
# verify against them), the config profiles, and the writable directories.
RUN set -eu; r=/rootfs; \
    install -D -m 0755 /out/infergate "$r/usr/local/bin/infergate"; \
    if [ -n "$CUDA_LIBS" ]; then \
        install -d "$r/usr/local/lib/cuda"; cp -a "$CUDA_LIBS"/. "$r/usr/local/lib/cuda/"; \
        export LD_LIBRARY_PATH="$r/usr/local/lib/cuda"; \
    fi; \
    for lib in $(ldd /out/infergate | awk '$2 == "=>" && $3 !~ /^\/rootfs\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }'); do \
        mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"; \
    done; \
    mkdir -p "$r/etc/ssl/certs" "$r/etc/infergate" "$r/tmp"; chmod 1777 "$r/tmp"; \
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
        cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"; fi; \
    echo 'infergate:x:10001:10001:infergate:/nonexistent:/usr/sbin/nologin' > "$r/etc/passwd"; \
    echo 'infergate:x:10001:' > "$r/etc/group"; \
    cp -r config "$r/etc/infergate/config"; \
    install -d -o 10001 -g 10001 -m 0750 "$r/var/lib/infergate/spool" "$r/run/infergate"; \
    "$r/usr/local/bin/infergate" --version

FROM ${RUNTIME_IMAGE}
COPY --from=build /rootfs/ /
# /usr/local/lib/cuda: the GPU variant's CUDA libraries (absent, and so unused, in the other).
ENV PATH=/usr/local/bin LD_LIBRARY_PATH=/usr/local/lib/cuda
WORKDIR /etc/infergate
USER 10001:10001
# Prediction log rows wait here while PostgreSQL is away (config/compose.toml points at it).
VOLUME /var/lib/infergate/spool
EXPOSE 8443
# Over the instance's own check socket (config/compose.toml): during a rollout two gateways
# share port 8443, and a probe of 127.0.0.1:8443 could reach the other one.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/infergate", "healthcheck", "--socket", "/run/infergate/check.sock", \
       "--url", "http://localhost/ready"]
ENTRYPOINT ["/usr/local/bin/infergate"]
CMD ["serve", "--profile", "compose"]
