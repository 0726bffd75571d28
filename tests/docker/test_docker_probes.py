"""httpGet probes on the docker runtime, as the kubelet runs them: readiness decides the container's and
the pod's Ready, a failing liveness probe restarts the container (root and a Docker engine; skipped,
saying why, otherwise). busybox's httpd serves the probes (a file: it lists no directories)."""

from __future__ import annotations

import pytest
from polling import wait_for

pytestmark = pytest.mark.root


def web_pod(name: str, readiness_port: int, liveness_port: int | None = None) -> dict:
    container = {"name": "web", "image": "busybox", "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/bin/sh", "port": readiness_port}, "periodSeconds": 1,
                                    "failureThreshold": 1}}
    if liveness_port is not None:
        container["livenessProbe"] = {"httpGet": {"path": "/bin/sh", "port": liveness_port}, "periodSeconds": 1,
                                      "failureThreshold": 2}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}


def ready(sandbox, name: str) -> bool:
    pod = sandbox.pod("default", name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_readiness_follows_the_probe_and_a_failing_liveness_probe_restarts(sandbox, core):
    core.create_namespaced_pod("default", web_pod("served", readiness_port=8080))
    core.create_namespaced_pod("default", web_pod("unserved", readiness_port=8081, liveness_port=8081))
    wait_for(lambda: ready(sandbox, "served"), timeout=60, what="served Ready once its readiness probe passes")
    wait_for(lambda: sandbox.pod("default", "unserved")["status"]["containerStatuses"][0]["restartCount"] >= 1,
             timeout=60, what="unserved restarted by its failing liveness probe")
    status = sandbox.pod("default", "unserved")["status"]
    assert status["phase"] == "Running" and not ready(sandbox, "unserved")
    assert status["containerStatuses"][0]["ready"] is False
    assert sandbox.pod("default", "served")["status"]["containerStatuses"][0]["restartCount"] == 0
