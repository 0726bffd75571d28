# Two images from one file:
#
#   docker build -t openvnf/kube-vxlan-controller:0.1.0 .                  # controller (default target)
#   docker build --target agent -t openvnf/kube-vxlan-controller-agent .   # agent for VXLAN pods
#
# With registry access that is all. Without it, `make images` builds equivalent bases from Debian
# packages (same release, bookworm) and passes them as PYTHON_BASE / DEBIAN_BASE, and hands the Python
# packages over as wheels it built on the host (PIP_OPTIONS="--no-index --find-links /src/wheelhouse"),
# so no container talks to PyPI.
#
# The default target of `docker build .` is the LAST stage, so the controller stage comes last.
ARG PYTHON_BASE=python:3.11-slim
ARG DEBIAN_BASE=debian:bookworm-slim

# ---- builder: the project and its dependencies installed into a venv -------------------------------
FROM ${PYTHON_BASE} AS builder
ARG PIP_OPTIONS=""
# .dockerignore lets in only pyproject.toml, README.md, kube_vxlan_controller/ and wheelhouse/ (if any)
COPY . /src
RUN python -m venv /opt/kvc \
 && /opt/kvc/bin/pip install --no-cache-dir ${PIP_OPTIONS} /src

# ---- agent: the container VXLAN pods run as init agent and sidecar agent ---------------------------
# iproute2 for `ip` and `bridge`, coreutils for `timeout` (the controller wraps its execs in it),
# procps for a `kill` binary. The main process waits for TERM (or /run/terminate) and exits 0.
FROM ${DEBIAN_BASE} AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 coreutils procps \
 && rm -rf /var/lib/apt/lists/*
COPY kube_vxlan_controller/agent.sh /agent.sh
RUN chmod 0755 /agent.sh
ENTRYPOINT ["/agent.sh"]

# ---- controller (default target) -------------------------------------------------------------------
FROM ${PYTHON_BASE} AS controller
# tini as PID 1: it forwards SIGTERM/SIGINT to the controller (so `kill -TERM 1` in the pod, and the
# kubelet's stop, reach the Python process and trigger its graceful shutdown), and it reaps zombies,
# which a Python PID 1 would not do for children it did not start itself (e.g. left by `kubectl exec`).
# procps for a `kill` binary: the seed's restart is `kubectl exec $POD -- kill -TERM 1`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/kvc /opt/kvc
# on PATH for `kubectl exec $POD -- kube-vxlan-controller inspect nets …`
RUN ln -s /opt/kvc/bin/kube-vxlan-controller /usr/local/bin/kube-vxlan-controller
ENV PATH="/opt/kvc/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# non-root; the same id the bundle's securityContext asks for
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "kube-vxlan-controller"]
CMD ["run"]
