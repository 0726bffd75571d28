"""Pods on different sandbox nodes, one overlay: VXLAN routed across the nodes' underlay, over IPv4,
IPv6-only and dual-stack clusters (root only). Truth from the kernel: fdb entries, pings, the nodes'
underlay counters and routes."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from kvc_sandbox import Sandbox
from polling import wait_for

pytestmark = pytest.mark.root

AGENT = {"image": "openvnf/kube-vxlan-controller-agent", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
NODES = ("sandbox-node-1", "sandbox-node-2")


@pytest.fixture(params=["ipv4", "ipv6", "dual"])
def family(request):
    return request.param


@pytest.fixture
def sandbox(tmp_path, family):
    with Sandbox(workdir=tmp_path, nodes=2, ip_family=family, mtu=1450) as sb:
        yield sb


def pod_manifest(name: str, networks: str, node: str | None = None, selector: str | None = None) -> dict:
    spec = {"initContainers": [{"name": "vxlan-controller-agent-init", **AGENT}],
            "containers": [{"name": "vxlan-controller-agent", **AGENT}]}
    if node:
        spec["nodeName"] = node
    if selector:
        spec["nodeSelector"] = {"kubernetes.io/hostname": selector}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"vxlan.openvnf.org": "true", "run": name},
                         "annotations": {"vxlan.openvnf.org/networks": networks}},
            "spec": spec}


def in_netns(netns: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=15)


def underlay_packets(sandbox, node: str) -> tuple[int, int]:
    """(rx, tx) packets of the node's underlay link."""
    netns = sandbox.network.networks[node].node_netns
    (link,) = json.loads(subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", "ul0"], capture_output=True,
                                        text=True, check=True).stdout)
    return link["stats64"]["rx"]["packets"], link["stats64"]["tx"]["packets"]


def start_pair(cluster, networks: str = "vxeth1 ip=192.168.11.{n}/29 up") -> tuple:
    for n, node in enumerate(NODES, start=2):
        cluster.core.create_namespaced_pod("default", pod_manifest(f"p{n}", networks.format(n=n), node))
    wait_for(lambda: len(cluster.running()) == 2, timeout=30, what="both pods running")
    return tuple(sorted(cluster.running(), key=lambda p: p.metadata.name))


def test_nodes_are_listed_ready_with_their_internal_ip_and_pod_cidrs(sandbox, kubectl, core, family):
    out = kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert out[0].split()[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert set(rows) == set(NODES) and all(row[1] == "Ready" for row in rows.values())
    versions = {"ipv4": [4], "ipv6": [6], "dual": [4, 6]}[family]
    for node in core.list_node().items:
        internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        assert [ipaddress.ip_address(a).version for a in internal] == versions
        assert rows[node.metadata.name][5] == internal[0]
        assert [ipaddress.ip_network(c).version for c in node.spec.pod_cidrs] == versions
        assert node.spec.pod_cidr == node.spec.pod_cidrs[0]


def test_pods_go_where_they_are_told_else_to_the_emptiest_node_and_get_its_host_ip(sandbox, core, family):
    core.create_namespaced_pod("default", pod_manifest("pinned", "", node=NODES[1]))
    core.create_namespaced_pod("default", pod_manifest("selected", "", selector=NODES[1]))
    core.create_namespaced_pod("default", pod_manifest("free", ""))  # node 1 has none yet
    nodes = {n.metadata.name: n for n in core.list_node().items}
    for name, node in (("pinned", NODES[1]), ("selected", NODES[1]), ("free", NODES[0])):
        pod = wait_for(lambda: (p := core.read_namespaced_pod(name, "default")).status.pod_ips and p,
                       timeout=15, what=f"{name} has its addresses")
        assert pod.spec.node_name == node
        internal = [a.address for a in nodes[node].status.addresses if a.type == "InternalIP"]
        assert pod.status.host_ip == internal[0]
        ips = [p.ip for p in pod.status.pod_ips]
        assert pod.status.pod_ip == ips[0]
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
                   for ip, cidr in zip(ips, nodes[node].spec.pod_cidrs))


def test_vxlan_between_pods_on_two_nodes_is_routed_over_the_underlay_up_to_its_mtu(sandbox, cluster, controller,
                                                                                   family):
    """Also the MTU (one setup for both, to keep the suite short): over the 1450-byte underlay the VXLAN link
    gets 1400 (IPv4) or 1380 (IPv6); the largest ping with DF set that it allows crosses, one byte more not."""
    controller()
    a, b = start_pair(cluster)
    assert a.spec.node_name != b.spec.node_name
    wait_for(lambda: cluster.wired([a, b], "vxeth1"), timeout=30, what="both fdbs hold the other pod")
    primary = ipaddress.ip_address(a.status.pod_ip).version
    assert {ipaddress.ip_address(ip).version for ip in cluster.fdb(a, "vxeth1") | cluster.fdb(b, "vxeth1")} == {primary}
    # The route node 1 takes to b's underlay address: via node 2's InternalIP, on the underlay link.
    node1 = sandbox.network.networks[NODES[0]].node_netns
    route = subprocess.run(["ip", "-n", node1, "route", "get", b.status.pod_ip], capture_output=True, text=True,
                           check=True).stdout
    assert f"via {sandbox.network.nodes[NODES[1]].addresses[0 if primary == 4 else -1]} dev ul0" in route
    # Neighbour resolution (ARP/NDP on both nodes' links, the overlay's ARP) can cost the first packets on a
    # busy machine: the first ping that passes, then the counted one.
    wait_for(lambda: cluster.ping(a, "192.168.11.3"), timeout=15, what="a reaches b over the overlay")
    before = underlay_packets(sandbox, NODES[0]), underlay_packets(sandbox, NODES[1])
    assert cluster.in_pod(a, ["ping", "-c", "3", "-W", "2", "192.168.11.3"]).returncode == 0
    after = underlay_packets(sandbox, NODES[0]), underlay_packets(sandbox, NODES[1])
    assert after[0][1] - before[0][1] >= 3 and after[1][0] - before[1][0] >= 3, (before, after)

    overhead = 50 if primary == 4 else 70  # outer IP + UDP + VXLAN + inner Ethernet
    assert cluster.link(a, "eth0")["mtu"] == 1450
    mtu = cluster.link(a, "vxeth1")["mtu"]
    assert mtu == 1450 - overhead
    largest = mtu - 28  # the overlay is IPv4: 20 bytes of IP header, 8 of ICMP
    fits = cluster.in_pod(a, ["ping", "-M", "do", "-c", "2", "-W", "2", "-s", str(largest), "192.168.11.3"])
    assert fits.returncode == 0, fits.stdout + fits.stderr
    too_big = cluster.in_pod(a, ["ping", "-M", "do", "-c", "1", "-W", "2", "-s", str(largest + 1), "192.168.11.3"])
    assert too_big.returncode != 0


def test_underlay_ipv6_carries_a_dual_stack_network_over_ipv6_and_ipv4_only_pods_are_told_why_not(
        sandbox, cluster, controller, family):
    controller()
    a, b = start_pair(cluster, "vxeth1 ip=192.168.11.{n}/29 up underlay=ipv6")
    if family == "ipv4":
        def event_says_why():
            events = cluster.core.list_namespaced_event("default").items
            return [e for e in events if e.involved_object.name == a.metadata.name
                    and "no IPv6 address" in (e.message or "")]
        (event,) = wait_for(event_says_why, timeout=15, what="an Event saying a has no IPv6 address")
        assert "not a member" in event.message
        assert cluster.link(a, "vxeth1") is None  # not set up either
        return
    wait_for(lambda: cluster.fdb(a, "vxeth1") and cluster.fdb(b, "vxeth1"), timeout=30, what="both fdbs filled")
    v6 = {p.metadata.name: next(i.ip for i in p.status.pod_ips if ":" in i.ip) for p in (a, b)}
    assert cluster.fdb(a, "vxeth1") == {v6[b.metadata.name]} and cluster.fdb(b, "vxeth1") == {v6[a.metadata.name]}
    info = cluster.link(a, "vxeth1")["linkinfo"]["info_data"]
    assert info["local6"] == v6[a.metadata.name]  # an IPv6 VXLAN link
    wait_for(lambda: cluster.ping(a, "192.168.11.3"), timeout=15, what="a reaches b over the IPv6 underlay")

