# Two images from one file:
#
#   docker build -t openvnf/kube-vxlan-controller:0.1.0 .                        # controller (default target)
#   docker build --target agent -t openvnf/kube-vxlan-controller-agent:0.1.0 .   # agent for VXLAN pods
#
# The controller installs exactly requirements.lock (pinned, hash-checked: `make lock` renews it).
#
# With registry access that is all. Without it, `make images` builds equivalent bases from Debian
# packages (same release, bookworm) and passes them as PYTHON_BASE / DEBIAN_BASE, and hands the Python
# packages over as wheels it built on the host (PIP_OPTIONS="--no-index --find-links /src/wheelhouse"),
# so no container talks to PyPI.
#
# The default target of `docker build .` is the LAST stage, so the controller stage comes last.
ARG PYTHON_BASE=python:3.11-slim
ARG DEBIAN_BASE=debian:bookworm-slim

# ---- builder: the project and its locked dependencies in a venv, ready to copy -----------------------
FROM ${PYTHON_BASE} AS builder
ARG PIP_OPTIONS=""
# .dockerignore lets in only pyproject.toml, README.md, LICENSE, requirements.lock, kube_vxlan_controller/
# and wheelhouse/ (if any)
COPY . /src
WORKDIR /opt/kvc/lib/python3.11/site-packages
# What the controller never runs leaves the venv: pip and setuptools (nothing is installed at run time);
# kubernetes.aio, the client's asyncio twin, and aiohttp with the packages only it needs (the controller
# uses the synchronous client; `import kube_vxlan_controller.controller` loads none of them).
# Bytecode, deliberately: the root filesystem is read-only, so every module ships compiled, with
# unchecked-hash pycs (no timestamps: the same bytes at every build, and valid whatever the files'
# mtimes). The kubernetes package, 34 MB of generated source, ships as bytecode only (legacy .pyc beside
# where the .py was): its tracebacks show no source lines; ours and every other package keep theirs.
RUN python -m venv /opt/kvc \
 && /opt/kvc/bin/pip install --no-cache-dir --require-hashes ${PIP_OPTIONS} -r /src/requirements.lock \
 && /opt/kvc/bin/pip install --no-cache-dir --no-deps ${PIP_OPTIONS} /src \
 && /opt/kvc/bin/pip uninstall -q -y aiohttp aiohttp-retry aiohappyeyeballs aiosignal attrs frozenlist \
      multidict propcache yarl \
 && rm -rf kubernetes/aio \
 && /opt/kvc/bin/python -m pip uninstall -q -y pip setuptools \
 && find /opt/kvc -name __pycache__ -prune -exec rm -rf {} + \
 && python -m compileall -q -j 0 -b --invalidation-mode unchecked-hash kubernetes \
 && find kubernetes -name '*.py' -delete \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '^/opt/kvc/lib/python3.11/site-packages/kubernetes/' /opt/kvc/lib

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

# ---- the controller's root filesystem: Debian's python3, tini and procps, the venv; then pruned ----------
FROM ${PYTHON_BASE} AS controller-root
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
# Nothing is installed in a running controller, so the package managers go (apt, dpkg and their
# databases; perl, which only they use), and so does what Python never loads here: glibc's iconv
# modules (Python has its own codecs), the stdlib's tests, IDLE, tkinter, lib2to3, pydoc's data,
# distutils, the wheels `python -m venv` seeds, docs and locales. The shell, coreutils, procps' kill and
# ps stay for `kubectl exec`.
RUN rm -rf /usr/bin/apt* /usr/bin/dpkg* /usr/lib/apt /usr/lib/dpkg /usr/lib/x86_64-linux-gnu/libapt-* \
      /var/lib/apt /var/cache/apt /var/lib/dpkg /var/cache/debconf /var/log/* /etc/apt /usr/share/debconf \
      /usr/bin/perl* /usr/lib/x86_64-linux-gnu/perl-base /usr/share/perl* /usr/lib/x86_64-linux-gnu/gconv \
      /usr/lib/python3.11/test /usr/lib/python3.11/idlelib /usr/lib/python3.11/tkinter \
      /usr/lib/python3.11/turtledemo /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/pydoc_data \
      /usr/lib/python3.11/distutils /usr/lib/python3.11/ensurepip /usr/share/python-wheels \
      /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale

# ---- controller (default target): that root filesystem as one layer -----------------------------------
# FROM scratch: files removed above cost nothing here (in a layer on top of the base they would still
# count in the image).
FROM scratch AS controller
COPY --from=controller-root / /
ENV PATH="/opt/kvc/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# non-root; the same id the Deployment's securityContext asks for
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "kube-vxlan-controller"]
CMD ["run"]
