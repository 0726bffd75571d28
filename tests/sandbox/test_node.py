"""The sandbox node: pod namespaces on a bridge that lives in a namespace of its own (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kvc_sandbox.node import NodeNetwork, ProcessRegistry
from polling import wait_for

pytestmark = pytest.mark.root


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def netns_names() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def own_netns() -> set[str]:
    """Namespaces of sandboxes of this test process (other sandboxes may run on the machine meanwhile)."""
    return {n for n in netns_names() if n.startswith(f"kvcsb-{os.getpid()}-")}


def host_links() -> set[str]:
    """The host's links, but those Docker makes for its networks and containers (as other tests and
    sandboxes on the machine start and stop them)."""
    return {name for line in sh("ip", "-br", "link").stdout.splitlines()
            if not (name := line.split()[0]).startswith(("veth", "br-", "docker0"))}


def require_ping() -> None:
    if shutil.which("ping") is None:
        print("skipping: ping is missing (apt-get install iputils-ping; `make deps` does it)")
        pytest.skip("ping is missing: apt-get install iputils-ping (`make deps`)")


@pytest.fixture
def node(request):
    net = NodeNetwork(tag=f"t{abs(hash(request.node.name)) % 100000}")
    try:
        net.start()
        yield net
    finally:
        net.stop()


def test_ipv4_pods_get_eth0_with_their_ip_and_reach_each_other_routed_by_the_node(node):
    require_ping()
    (ns1, ip1), (ns2, ip2) = node.add_pod("uid-1"), node.add_pod("uid-2")
    assert ip1 != ip2
    for ns, ip in ((ns1, ip1), (ns2, ip2)):
        assert f"{ip}/32" in sh("ip", "-n", ns, "-br", "addr", "show", "eth0").stdout
        assert "default via 10.66.0.1 dev eth0" in sh("ip", "-n", ns, "route").stdout
    assert sh("ip", "netns", "exec", ns1, "ping", "-c", "1", "-w", "5", ip2, check=False).returncode == 0
    assert sh("ip", "netns", "exec", ns2, "ping", "-c", "1", "-w", "5", ip1, check=False).returncode == 0
    # one neighbour each, the gateway: no pod ARPs for another pod (no broadcast copied to every port)
    for ns in (ns1, ns2):
        assert [line.split()[0] for line in sh("ip", "-n", ns, "-4", "neigh").stdout.splitlines()] == ["10.66.0.1"]


def test_node_leaves_the_host_namespace_untouched_and_stop_removes_everything():
    links_before, netns_before = host_links(), own_netns()
    net = NodeNetwork(tag="leave")
    try:
        net.start()
        names = [net.add_pod(f"uid-{i}")[0] for i in range(3)]
        assert {net.node_netns, *names} <= netns_names()
        assert host_links() == links_before
        assert "10.66." not in sh("ip", "addr").stdout + sh("ip", "route").stdout
    finally:
        net.stop()
    net.stop()  # idempotent
    assert own_netns() == netns_before
    assert not any(n.startswith(net.prefix) for n in netns_names())
    assert host_links() == links_before


def test_remove_pod_deletes_its_namespace_and_kills_its_processes(node):
    ns, _ = node.add_pod("uid-1")
    other, _ = node.add_pod("uid-2")
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
    try:
        wait_for(lambda: sh("ip", "netns", "pids", ns).stdout.strip() != "", what="sleep in the pod")
        node.remove_pod("uid-1")
        node.remove_pod("uid-1")  # idempotent
        assert sleeper.wait(timeout=5) == -9
        assert ns not in netns_names() and other in netns_names()
        assert node.pod_netns("uid-1") is None
        veths = sh("ip", "-n", node.node_netns, "-br", "link").stdout
        assert veths.count("@") == 1  # only uid-2's veth is left on the bridge
    finally:
        sleeper.kill()


def test_addresses_are_unique_under_concurrency_and_not_reused_at_once(node):
    with ThreadPoolExecutor(8) as pool:
        pods = list(pool.map(node.add_pod, [f"uid-{i}" for i in range(24)]))
    assert len({ip for _, ip in pods}) == 24 and len({ns for ns, _ in pods}) == 24
    assert node.add_pod("uid-3") == pods[3]  # asking again for the same pod gives the same answer
    node.remove_pod("uid-0")
    _, new_ip = node.add_pod("uid-new")
    assert new_ip not in {ip for _, ip in pods}


def test_add_pod_is_fast(node):
    node.add_pod("warm-up")
    start = time.perf_counter()
    for i in range(20):
        node.add_pod(f"uid-{i}")
    per_pod = (time.perf_counter() - start) / 20
    print(f"add_pod: {per_pod * 1000:.1f} ms per pod")
    assert per_pod < 0.2


def test_stop_after_a_failed_start_cleans_up():
    net = NodeNetwork(tag="fail")
    # A namespace of the same name already exists: start fails, and must leave nothing of its own.
    sh("ip", "netns", "add", net.node_netns)
    try:
        with pytest.raises(Exception):
            net.start()
        net.stop()
        assert net.node_netns not in netns_names()
    finally:
        sh("ip", "netns", "delete", net.node_netns, check=False)


def test_remove_stale_removes_leftovers_of_dead_processes_only():
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "300"])
    stale_node, stale_pod = f"kvcsb-{dead.pid}-x-node", f"kvcsb-{dead.pid}-x-p1"
    kept = f"kvcsb-{live.pid}-x-node"
    for name in (stale_node, stale_pod, kept):
        sh("ip", "netns", "add", name)
    squatter = subprocess.Popen(["ip", "netns", "exec", stale_pod, "sleep", "300"])
    try:
        wait_for(lambda: sh("ip", "netns", "pids", stale_pod).stdout.strip() != "", what="sleep in the ns")
        removed = NodeNetwork.remove_stale()
        assert set(removed) >= {stale_node, stale_pod}
        names = netns_names()
        assert stale_node not in names and stale_pod not in names
        assert kept in names
        assert squatter.wait(timeout=5) == -9
    finally:
        for proc in (live, squatter):
            proc.kill()
            proc.wait()
        for name in (stale_node, stale_pod, kept):
            sh("ip", "netns", "delete", name, check=False)


def test_process_registry_kills_the_pods_processes_and_refuses_late_ones(node):
    registry = ProcessRegistry()
    a, b, late = (subprocess.Popen(["sleep", "300"]) for _ in range(3))
    try:
        registry.add("ns-a", a.pid)
        registry.add("ns-b", b.pid)
        assert registry.count() == 2 and registry.pids("ns-a") == [a.pid]
        assert registry.kill_all("ns-a") == 1
        assert a.wait(timeout=5) == -9
        assert b.poll() is None
        assert registry.add("ns-a", late.pid) is False  # the pod is gone: an exec racing with it dies
        assert late.wait(timeout=5) == -9
        registry.kill_everything()
        assert b.wait(timeout=5) == -9
        assert registry.count() == 0
    finally:
        for proc in (a, b, late):
            proc.kill()
            proc.wait()


def test_registry_never_signals_a_process_that_was_discarded():
    registry = ProcessRegistry()
    proc = subprocess.Popen(["sleep", "300"])
    try:
        registry.add("ns", proc.pid)
        registry.discard("ns", proc.pid)
        assert registry.kill_all("ns") == 0
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_node_calls_from_many_threads_do_not_interfere(node):
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for j in range(3):
                node.add_pod(f"uid-{i}-{j}")
                node.remove_pod(f"uid-{i}-{j}")
        except BaseException as exc:  # noqa: BLE001 — collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert [n for n in netns_names() if n.startswith(node.prefix + "-p")] == []


def test_namespace_names_carry_the_pid():
    net = NodeNetwork(tag="named")
    assert net.node_netns == f"kvcsb-{os.getpid()}-named-node"
    with pytest.raises(ValueError):
        NodeNetwork(tag="bad-tag")
