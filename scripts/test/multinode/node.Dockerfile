# A Swarm node for scripts/test/multinode.sh: Debian's own Docker Engine (docker.io) in a
# container of the local base image, so that three of them are three engines with their
# own addresses, host networks and storage, on one machine and without a registry.
ARG BASE_IMAGE=infergate/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io iptables iproute2 procps ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/*
# The engine's images, containers and volumes: an anonymous volume of the outer engine
# (overlay2 works on it, not on the container's own overlay root), removed with the node.
VOLUME /var/lib/docker
ENTRYPOINT ["dockerd"]
