"""A node that goes down and comes back, end to end (root only): the sandbox's node lifecycle (NotReady,
the unreachable taint, eviction after tolerationSeconds, replacements on other nodes) and the controller's
fdbs, read from the kernel. Prints the timeline (`pytest -s` shows it)."""

from __future__ import annotations

import time

import pytest
from e2e.conftest import deployment

from kvc_sandbox import Sandbox
from polling import wait_for

pytestmark = pytest.mark.root

NODES = ("sandbox-node-1", "sandbox-node-2", "sandbox-node-3")
LOST = NODES[2]
GRACE, TOLERATION = 2.0, 3


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(workdir=tmp_path, nodes=3, node_grace=GRACE) as sb:
        yield sb


def ready(obj) -> str:
    return next((c.status for c in obj.status.conditions or [] if c.type == "Ready"), "")


def test_a_lost_nodes_pods_are_evicted_replaced_elsewhere_and_every_fdb_is_exact_again(sandbox, cluster, controller,
                                                                                      kubectl):
    controller()
    manifest = deployment("x", "vxeth1 up", replicas=3)
    manifest["spec"]["template"]["spec"]["tolerations"] = [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": TOLERATION}]
    cluster.apps.create_namespaced_deployment("default", manifest)
    wait_for(lambda: len(cluster.running()) == 3, timeout=30, what="3 pods running")
    pods = cluster.running()
    assert sorted(p.spec.node_name for p in pods) == list(NODES)  # the emptiest node each time
    wait_for(lambda: cluster.wired(pods, "vxeth1"), timeout=30, what="all wired")
    (lost,) = [p for p in pods if p.spec.node_name == LOST]
    survivors = [p for p in pods if p is not lost]

    timeline = []

    def mark(what: str) -> None:
        timeline.append((time.monotonic(), what))

    mark(f"{LOST} cut off (underlay link down, kubelet silent)")
    sandbox.faults.cut_node(LOST)
    node = wait_for(lambda: (n := cluster.core.read_node(LOST)) and ready(n) == "Unknown" and n, timeout=GRACE + 10,
                    what="the node NotReady")
    mark(f"{LOST} NotReady")
    rows = {line.split()[0]: line.split()[1] for line in kubectl("get", "nodes").stdout.splitlines()[1:]}
    assert rows == {NODES[0]: "Ready", NODES[1]: "Ready", LOST: "NotReady"}
    assert {(t.key, t.effect) for t in node.spec.taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")}
    assert ready(cluster.core.read_namespaced_pod(lost.metadata.name, "default")) == "False"
    # NotReady is not gone: the survivors keep the lost pod as a peer (it may come back).
    assert all(lost.status.pod_ip in cluster.fdb(p, "vxeth1") for p in survivors)
    wait_for(lambda: cluster.core.read_namespaced_pod(lost.metadata.name, "default").metadata.deletion_timestamp,
             timeout=TOLERATION + 10, what="the lost pod evicted")
    evicted = time.monotonic()
    mark(f"pod {lost.metadata.name} evicted (Terminating: its node cannot confirm)")

    def replaced():
        now = cluster.running()
        return len(now) == 3 and all(ready(p) == "True" for p in now) and now
    members = wait_for(replaced, timeout=30, what="a replacement running")
    (new,) = [p for p in members if p.metadata.name not in {s.metadata.name for s in survivors}]
    assert new.spec.node_name in NODES[:2]
    mark(f"replacement {new.metadata.name} Running on {new.spec.node_name}")
    wait_for(lambda: cluster.wired(members, "vxeth1"), timeout=30, what="every member's fdb exact")
    exact = time.monotonic()
    mark("every surviving member's fdb exact")

    sandbox.faults.restore_node(LOST)
    mark(f"{LOST} back")
    wait_for(lambda: ready(cluster.core.read_node(LOST)) == "True", timeout=10, what="the node Ready again")
    mark(f"{LOST} Ready")
    wait_for(lambda: not [p for p in cluster.core.list_namespaced_pod("default").items
                          if p.metadata.name == lost.metadata.name], timeout=15, what="the evicted pod deleted")
    mark(f"pod {lost.metadata.name} deleted by its kubelet")
    assert not cluster.core.read_node(LOST).spec.taints
    # No stale entry of the evicted pod, no duplicate: exactly the other members, on every member.
    assert cluster.wired(members, "vxeth1")
    for pod in members:
        out = cluster.in_pod(pod, ["bridge", "fdb", "show", "dev", "vxeth1"]).stdout
        assert sum(line.startswith("00:00:00:00:00:00") for line in out.splitlines()) == 2, out

    start = timeline[0][0]
    print(f"\nnode loss timeline (grace {GRACE:g} s, tolerationSeconds {TOLERATION}):")
    for at, what in timeline:
        print(f"  {at - start:6.2f}s  {what}")
    print(f"eviction → every surviving member's fdb exact: {exact - evicted:.2f}s")


def test_a_node_back_before_eviction_keeps_its_pods_and_every_fdb_as_it_was(sandbox, cluster, controller):
    controller()
    cluster.create_deployment("y", "vxeth1 up", replicas=3)  # the default toleration: 300 s
    wait_for(lambda: len(cluster.running()) == 3, timeout=30, what="3 pods running")
    pods = cluster.running()
    wait_for(lambda: cluster.wired(pods, "vxeth1"), timeout=30, what="all wired")
    (lost,) = [p for p in pods if p.spec.node_name == LOST]
    sandbox.faults.cut_node(LOST)
    wait_for(lambda: ready(cluster.core.read_node(LOST)) == "Unknown", timeout=GRACE + 10, what="the node NotReady")
    wait_for(lambda: ready(cluster.core.read_namespaced_pod(lost.metadata.name, "default")) == "False",
             timeout=5, what="its pod not Ready")
    assert cluster.wired(pods, "vxeth1")  # a NotReady peer stays a peer
    sandbox.faults.restore_node(LOST)
    wait_for(lambda: ready(cluster.core.read_namespaced_pod(lost.metadata.name, "default")) == "True",
             timeout=10, what="its pod Ready again")
    assert ready(cluster.core.read_node(LOST)) == "True" and not cluster.core.read_node(LOST).spec.taints
    assert sorted(p.metadata.name for p in cluster.running()) == sorted(p.metadata.name for p in pods)
    assert cluster.wired(pods, "vxeth1")
