"""`GET /sandbox/stats`: what the server saw, for benchmarks that must count every client the same way (root)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from apihelpers import AGENT, AGENT_INIT, pod_manifest
from kubernetes.stream import stream
from polling import wait_for

pytestmark = pytest.mark.root


def stats(sandbox) -> dict:
    with urllib.request.urlopen(f"{sandbox.url}/sandbox/stats", timeout=5) as response:
        assert response.headers["Content-Type"].split(";")[0] == "application/json"
        return json.loads(response.read())


def running(core, name: str, container: str) -> bool:
    status = core.read_namespaced_pod(name, "default").status
    statuses = (status.init_container_statuses or []) + (status.container_statuses or [])
    return any(s.name == container and s.state.running for s in statuses)


def run(core, name: str, container: str, argv: list[str]) -> None:
    stream(core.connect_get_namespaced_pod_exec, name, "default", command=argv, container=container,
           stdin=False, stdout=True, stderr=True, tty=False)


def test_stats_count_execs_by_container_and_map_pods_to_their_network_namespaces(sandbox, core):
    before = stats(sandbox)
    assert before["execs"] == {"total": 0, "by_container": {}}
    pod = core.create_namespaced_pod("default", pod_manifest("p"))
    wait_for(lambda: running(core, "p", AGENT_INIT), what="the init agent to run")
    run(core, "p", AGENT_INIT, ["kill", "-TERM", "1"])
    wait_for(lambda: running(core, "p", AGENT), what="the sidecar agent to run")
    run(core, "p", AGENT, ["true"])
    run(core, "p", AGENT, ["true"])
    after = stats(sandbox)
    assert after["execs"] == {"total": 3, "by_container": {AGENT_INIT: 1, AGENT: 2}}
    assert after["netns"] == {pod.metadata.uid: sandbox.pod_netns("default", "p")}


def test_stats_count_open_watches(sandbox):
    assert stats(sandbox)["watches"] == 0
    watch = urllib.request.urlopen(f"{sandbox.url}/api/v1/pods?watch=true", timeout=5)
    try:
        wait_for(lambda: stats(sandbox)["watches"] == 1, what="the watch to be counted")
    finally:
        watch.close()
