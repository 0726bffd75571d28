# Two images from one file (no engine runs in our CI; keep this simple):
#
#   docker build -t openvnf/kube-vxlan-controller:0.1.0 .                  # controller (default target)
#   docker build --target agent -t openvnf/kube-vxlan-controller-agent .   # agent for VXLAN pods
#
# The default target of `docker build .` is the LAST stage, so the controller stage comes last.

# ---- builder: wheels of the project and its dependencies, installed into a venv ---------------------
FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kube_vxlan_controller ./kube_vxlan_controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -m venv /opt/kvc \
 && /opt/kvc/bin/pip install --no-cache-dir --no-index --find-links /wheels kube-vxlan-controller

# ---- agent: the container VXLAN pods run as init agent and sidecar agent ---------------------------
# iproute2 for `ip` and `bridge`, coreutils for `timeout` (the controller wraps its execs in it),
# procps for a `kill` binary. The main process waits for TERM (or /run/terminate) and exits 0.
FROM debian:bookworm-slim AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 coreutils procps \
 && rm -rf /var/lib/apt/lists/*
COPY kube_vxlan_controller/agent.sh /agent.sh
RUN chmod 0755 /agent.sh
ENTRYPOINT ["/agent.sh"]

# ---- controller (default target) -------------------------------------------------------------------
FROM python:3.11-slim AS controller
# tini as PID 1: it forwards SIGTERM/SIGINT to the controller (so `kill -TERM 1` in the pod, and the
# kubelet's stop, reach the Python process and trigger its graceful shutdown), and it reaps zombies,
# which a Python PID 1 would not do for children it did not start itself (e.g. left by `kubectl exec`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
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
