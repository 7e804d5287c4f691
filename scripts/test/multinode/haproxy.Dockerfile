# The load balancer in front of the nodes for scripts/test/multinode.sh: Debian's HAProxy,
# TCP pass-through, health-checking each node's /ready over TLS.
ARG BASE_IMAGE=infergate/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/*
ENTRYPOINT ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
