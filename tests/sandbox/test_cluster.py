"""Several sandbox nodes: what `serve` refuses (one line, non-zero, nothing left behind), and that stopping
removes every namespace, link and route of the nodes and their underlay (root only)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kvc_sandbox import Sandbox
from kvc_sandbox.cluster import ClusterConfig, ClusterConfigError, check_cidrs
from polling import wait_for

pytestmark = pytest.mark.root


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_state() -> tuple[str, str, str]:
    """The host's links and routes, but Docker's (other tests and developers make and remove them meanwhile)."""
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    kept = "\n".join(sorted(line.split()[0] for line in links.splitlines()
                            if not line.split()[0].startswith(("veth", "br-", "docker0"))))
    routes = [subprocess.run(["ip", family, "route"], capture_output=True, text=True).stdout for family in ("-4", "-6")]
    strip = lambda text: "\n".join(sorted(l for l in text.splitlines()  # noqa: E731
                                           if not any(w in l for w in ("docker", " dev br-", " dev veth"))))
    return kept, strip(routes[0]), strip(routes[1])


def serve(*args: str) -> subprocess.CompletedProcess:
    """`kube-vxlan-sandbox serve ARGS` to its end; `.pid` is the process's (its namespaces' names hold it)."""
    proc = subprocess.Popen([sys.executable, "-m", "kvc_sandbox.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=30)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    out.pid = proc.pid
    return out


@pytest.mark.parametrize("args, says", [
    (("--nodes", "0"), "--nodes must be a whole number from 1 to"),
    (("--nodes", "two"), "--nodes must be a whole number from 1 to"),
    (("--ip-family", "ipv5"), "--ip-family must be one of ipv4, ipv6, dual, not 'ipv5'"),
    (("--ip-family", "dual", "--pod-cidr", "fd00:1::/48"), "--ip-family dual needs an IPv4 then an IPv6 CIDR"),
    (("--mtu", "500"), "--mtu must be from 1280"),
])
def test_serve_refuses_bad_nodes_in_one_line_and_leaves_nothing(args, says):
    before = host_state()
    out = serve(*args)
    assert out.returncode == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1 and says in out.stderr, out.stderr
    assert not [n for n in netns_names() if n.startswith(f"kvcsb-{out.pid}-")]
    assert host_state() == before


def test_serve_refuses_a_pod_cidr_that_clashes_with_a_route_of_the_host():
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.split()
    host_net = next((word for word in routes if "/" in word), None)
    if host_net is None:
        pytest.skip("the host has no IPv4 route with a prefix to clash with")
    out = serve("--pod-cidr", host_net)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"pod CIDR {host_net} clashes with the host's route" in out.stderr


def test_clash_check_compares_only_the_same_family():
    import ipaddress

    with pytest.raises(ClusterConfigError, match="clashes with the host's route 10.66.1.0/24 dev eth9"):
        check_cidrs([ipaddress.ip_network("10.66.0.0/16")], [("10.66.1.0/24", "eth9")])
    check_cidrs([ipaddress.ip_network("fd00:66::/48")], [("10.66.1.0/24", "eth9")])
    with pytest.raises(ClusterConfigError, match="too small for 3 nodes"):
        ClusterConfig(nodes=3, pod_cidrs=("10.66.0.0/30",)).validate()


def test_stop_removes_every_node_namespace_link_and_route(tmp_path):
    before = host_state()
    sandbox = Sandbox(workdir=tmp_path, nodes=3, ip_family="dual", mtu=1450)
    with sandbox, k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig)) as api:
        core = k8s.CoreV1Api(api)
        for i in range(3):
            core.create_namespaced_pod("default", {
                "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "vxlan-controller-agent", "image": "agent"}]}})
        wait_for(lambda: all((sandbox.pod("default", f"p{i}") or {}).get("status", {}).get("phase") == "Running"
                             for i in range(3)), what="3 pods running")
        prefix = sandbox.network.prefix + "-"
        ours = {n for n in netns_names() if n.startswith(prefix)}
        assert len(ours) == 1 + 3 + 3  # the underlay, 3 nodes, 3 pods
        sandbox.faults.cut_node("sandbox-node-2")  # a cut node is removed too
    assert not {n for n in netns_names() if n.startswith(prefix)}
    assert host_state() == before


def control(sandbox, **body) -> tuple[int, dict]:
    request = urllib.request.Request(f"{sandbox.url}/sandbox/faults", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_fault_endpoint_cuts_a_node_off_and_brings_it_back(tmp_path):
    with Sandbox(workdir=tmp_path, nodes=2, node_grace=0.5) as sandbox, \
            k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig)) as api:
        core = k8s.CoreV1Api(api)
        underlay = sandbox.network.underlay_netns
        code, state = control(sandbox, cut_node="sandbox-node-2")
        assert code == 200 and state["cut_nodes"] == ["sandbox-node-2"]
        assert "state DOWN" in subprocess.run(["ip", "-n", underlay, "link", "show", "n2"], capture_output=True,
                                              text=True).stdout
        wait_for(lambda: core.read_node("sandbox-node-2").spec.taints, timeout=5, what="the node tainted")
        code, state = control(sandbox, restore_node="sandbox-node-2")
        assert code == 200 and state["cut_nodes"] == []
        code, state = control(sandbox, cut_node="no-such-node")
        assert code == 400 and "no node 'no-such-node'" in state["message"]
