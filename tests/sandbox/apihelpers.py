"""Helpers for the sandbox API tests (imported as `apihelpers`: the test directories are not packages)."""

from __future__ import annotations

import subprocess


AGENT_INIT = "vxlan-controller-agent-init"
AGENT = "vxlan-controller-agent"
#: The exit codes of an exec of `kill -TERM 1`: the container's main process (the agent) exits at once on
#: TERM, and the kernel then SIGKILLs whatever is left in its PID namespace — the exec'd `kill` too when it
#: has not exited yet. So the exec ends 0 or 137, whichever wins, as on a real cluster.
TERMINATE_CODES = (0, 137)


def pod_manifest(name: str, labels: dict | None = None, init: list[str] | None = None,
                 containers: list[str] | None = None) -> dict:
    init = [AGENT_INIT] if init is None else init
    containers = [AGENT] if containers is None else containers
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "test"}},
            "spec": {"initContainers": [{"name": c, "image": "agent"} for c in init],
                     "containers": [{"name": c, "image": "agent"} for c in containers]}}


def deployment_manifest(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "vxlan.openvnf.org": "true"}},
                                  "spec": {"initContainers": [{"name": AGENT_INIT, "image": "agent"}],
                                           "containers": [{"name": AGENT, "image": "agent"}]}}}}


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}
