"""Two pods given a VXLAN interface and one all-zeros fdb entry each ping each other over the overlay.

Done by hand, the way the controller will do it: first with `ip netns exec` on the sandbox node, then
through pod exec with the official client against the sandbox (setup in the init agent, `kill -TERM 1`,
the fdb in the sidecar agent, the ping from the pod). Root only; `ping` comes from iputils-ping.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from apihelpers import AGENT, AGENT_INIT, TERMINATE_CODES, pod_manifest
from polling import wait_for
from kubernetes.stream import stream

from kvc_sandbox.node import NodeNetwork

pytestmark = pytest.mark.root

OVERLAY = {0: "192.168.100.1", 1: "192.168.100.2"}


def setup_commands(underlay_peer: str, overlay_ip: str) -> list[list[str]]:
    return [
        ["ip", "link", "add", "vxeth0", "type", "vxlan", "id", "100", "dev", "eth0", "dstport", "4789"],
        ["ip", "addr", "add", f"{overlay_ip}/24", "dev", "vxeth0"],
        ["ip", "link", "set", "vxeth0", "up"],
        ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxeth0", "dst", underlay_peer],
    ]


@pytest.fixture
def ping():
    if shutil.which("ping") is None:
        print("skipping: ping is missing (apt-get install iputils-ping; `make deps` does it)")
        pytest.skip("ping is missing: apt-get install iputils-ping (`make deps`)")


def test_vxlan_between_two_node_namespaces(ping):
    node = NodeNetwork(tag="vxhand")
    try:
        node.start()
        pods = [node.add_pod("uid-a"), node.add_pod("uid-b")]
        for i, (ns, _) in enumerate(pods):
            peer_ip = pods[1 - i][1]
            for argv in setup_commands(peer_ip, OVERLAY[i]):
                subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True)
        for i, (ns, _) in enumerate(pods):
            result = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-w", "5", OVERLAY[1 - i]],
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        node.stop()


def pod_exec(core, pod: str, container: str, argv: list[str], timeout: float = 15.0, ok=(0,)) -> str:
    resp = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=argv, container=container,
                  stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        resp.run_forever(timeout=timeout)
        out, err = resp.read_stdout(timeout=0), resp.read_stderr(timeout=0)
        assert not resp.is_open(), f"{argv} still running after {timeout}s"
        assert resp.returncode in ok, f"{argv} in {pod}/{container}: {out}{err}"
        return out
    finally:
        resp.close()
        resp.sock.shutdown()  # close() returns early when the server closed first: the socket would leak


def container_running(core, pod: str, container: str, init: bool) -> bool:
    status = core.read_namespaced_pod(pod, "default").status
    statuses = (status.init_container_statuses if init else status.container_statuses) or []
    return any(s.name == container and s.state.running is not None for s in statuses)


def test_vxlan_between_two_sandbox_pods_through_exec(ping, sandbox, core):
    names = ["vx-a", "vx-b"]
    for name in names:
        core.create_namespaced_pod("default", pod_manifest(name, labels={"app": "vx"}, init=[AGENT_INIT],
                                                           containers=[AGENT, "main"]))
    ips = [wait_for(lambda n=n: core.read_namespaced_pod(n, "default").status.pod_ip, what=f"{n}'s IP")
           for n in names]
    for i, name in enumerate(names):
        wait_for(lambda: container_running(core, name, AGENT_INIT, init=True), what=f"{name}'s init agent")
        for argv in setup_commands(ips[1 - i], OVERLAY[i])[:3]:
            pod_exec(core, name, AGENT_INIT, argv)
        pod_exec(core, name, AGENT_INIT, ["kill", "-TERM", "1"], ok=TERMINATE_CODES)
    for i, name in enumerate(names):
        wait_for(lambda: container_running(core, name, AGENT, init=False), what=f"{name}'s sidecar agent")
        pod_exec(core, name, AGENT, setup_commands(ips[1 - i], OVERLAY[i])[3])
        fdb = pod_exec(core, name, AGENT, ["bridge", "fdb", "show", "dev", "vxeth0"])
        assert f"00:00:00:00:00:00 dst {ips[1 - i]}" in fdb
    for i, name in enumerate(names):
        out = pod_exec(core, name, "main", ["ping", "-c", "1", "-w", "5", OVERLAY[1 - i]])
        assert "1 received" in out
    assert core.read_namespaced_pod(names[0], "default").status.phase == "Running"
