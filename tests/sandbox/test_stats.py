"""`GET /sandbox/stats`: what the server saw, for benchmarks that must count every client the same way (root)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from apihelpers import AGENT, AGENT_INIT, close, open_exec, pod_manifest, service_account_token
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream
from polling import wait_for

from kvc_sandbox.runner import kubeconfig_text

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
    assert before["execs"] == {"total": 0, "by_container": {}, "by_user": {}, "by_pod": {}, "open": 0,
                               "most_open": 0, "most_users_at_once": 0}
    pod = core.create_namespaced_pod("default", pod_manifest("p"))
    wait_for(lambda: running(core, "p", AGENT_INIT), what="the init agent to run")
    run(core, "p", AGENT_INIT, ["kill", "-TERM", "1"])
    wait_for(lambda: running(core, "p", AGENT), what="the sidecar agent to run")
    run(core, "p", AGENT, ["true"])
    run(core, "p", AGENT, ["true"])
    after = stats(sandbox)
    assert after["execs"] == {"total": 3, "by_container": {AGENT_INIT: 1, AGENT: 2}, "by_user": {"sandbox-admin": 3},
                              "by_pod": {"default/p": 3}, "open": 0, "most_open": 1, "most_users_at_once": 1}
    assert after["netns"] == {pod.metadata.uid: sandbox.pod_netns("default", "p")}


def test_a_long_lived_exec_counts_once_by_its_pod_and_is_open_until_its_command_ends(sandbox, core):
    for name in ("a", "b"):
        core.create_namespaced_pod("default", pod_manifest(name, init=[]))
        wait_for(lambda: running(core, name, AGENT), what=f"{name}'s agent to run")
    session = open_exec(core, "a", ["sh", "-c", "while read line; do echo $line; done"], container=AGENT, stdin=True)
    try:
        wait_for(lambda: stats(sandbox)["execs"]["open"] == 1, what="the session to be counted open")
        for line in ("one", "two", "three"):  # requests over the session are not execs
            session.write_stdin(f"{line}\n")
        run(core, "b", AGENT, ["true"])
        execs = stats(sandbox)["execs"]
        assert (execs["total"], execs["by_pod"], execs["open"]) == (2, {"default/a": 1, "default/b": 1}, 1)
        assert execs["most_open"] == 2  # b's exec ran while the session was open
    finally:
        session.close_channel(0)
        session.run_forever(timeout=10)
        close(session)
    wait_for(lambda: stats(sandbox)["execs"]["open"] == 0, what="the session's end to be counted")
    assert stats(sandbox)["execs"]["total"] == 2


def test_stats_count_open_watches(sandbox):
    assert stats(sandbox)["watches"] == 0
    watch = urllib.request.urlopen(f"{sandbox.url}/api/v1/pods?watch=true", timeout=5)
    try:
        wait_for(lambda: stats(sandbox)["watches"] == 1, what="the watch to be counted")
    finally:
        watch.close()


def test_stats_count_execs_by_user_and_the_most_users_exec_ing_at_once(sandbox, core, tmp_path):
    rbac = k8s.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_service_account("default", {"metadata": {"name": "other"}})
    rbac.create_namespaced_role("default", {"metadata": {"name": "exec"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]})
    rbac.create_namespaced_role_binding("default", {
        "metadata": {"name": "exec"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec"},
        "subjects": [{"kind": "ServiceAccount", "name": "other", "namespace": "default"}]})
    (tmp_path / "other").write_text(kubeconfig_text(sandbox.url, token=service_account_token(sandbox, "default", "other")))
    other = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(tmp_path / "other")))
    core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: running(core, "p", AGENT), what="the agent to run")

    run(core, "p", AGENT, ["true"])
    run(other, "p", AGENT, ["true"])
    assert stats(sandbox)["execs"]["most_users_at_once"] == 1, "one after the other is not at once"
    waiting = open_exec(core, "p", ["sh", "-c", "read line"], container=AGENT, stdin=True)  # runs until stdin ends
    try:
        run(other, "p", AGENT, ["true"])
    finally:
        waiting.close_channel(0)
        waiting.run_forever(timeout=10)
        close(waiting)
    execs = stats(sandbox)["execs"]
    assert execs["by_user"] == {"sandbox-admin": 2, "system:serviceaccount:default:other": 2}
    assert execs["most_users_at_once"] == 2
    other.api_client.close()
