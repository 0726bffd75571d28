"""Network parameter changes converge, and a missing ConfigMap breaks nothing (root).

The truth is the kernel: `ip -d -j addr show` and `bridge fdb` in the pods' namespaces, and pings over the
overlay. The desired state is the network's options (ConfigMap merged with the annotation): every member's
interface is converged to it, whether it changed while the controller ran or while it was down.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time

import pytest


from .conftest import ROOT, Cluster
import sidecarlog
from polling import wait_for
from .test_controller import NET, bare_pod
from .test_wired import condition, one

pytestmark = pytest.mark.root

CONFIGMAP, NAMESPACE = "kube-vxlan-controller", "kube-system"


def overlay(i: int) -> str:
    return f"192.168.70.{i}"


def create_members(cluster: Cluster, names: str, extra: str = "") -> None:
    for i, name in enumerate(names, start=1):
        cluster.core.create_namespaced_pod("default", bare_pod(name, f"{NET} ip={overlay(i)}/24{extra}"))


def members(cluster: Cluster, names: str) -> list | None:
    pods = {p.metadata.name: p for p in cluster.running()}
    return [pods[n] for n in names] if all(n in pods for n in names) else None


def vxlan(cluster: Cluster, pod) -> dict:
    """The pod's NET link as the kernel reports it: its info_data, mtu, addresses, and gateway routes."""
    link = cluster.link(pod, NET) or {}
    routes = cluster.in_pod(pod, ["ip", "route", "show", "dev", NET]).stdout
    return {**link.get("linkinfo", {}).get("info_data", {}), "mtu": link.get("mtu"),
            "addresses": {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("scope") == "global"},
            "routes": {line.split(" dev ")[0].strip() for line in routes.splitlines() if " via " in line}}


def all_show(cluster: Cluster, pods: list, **want) -> bool:
    return all(all(vxlan(cluster, p).get(k) == v for k, v in want.items()) for p in pods)


def pings_all(cluster: Cluster, pods: list) -> bool:
    """Every pod pings every other over the overlay (their ip= are overlay(1), overlay(2), …)."""
    return all(cluster.ping(p, overlay(j)) for i, p in enumerate(pods, 1) for j in range(1, len(pods) + 1) if j != i)


def set_network(cluster: Cluster, options: str) -> None:
    cluster.core.patch_namespaced_config_map(CONFIGMAP, NAMESPACE, {"data": {NET: options}})


def reasons(cluster: Cluster, pod, reason: str) -> list[str]:
    return [e.message for e in cluster.core.list_namespaced_event(pod.metadata.namespace).items
            if e.involved_object.name == pod.metadata.name and e.reason == reason]


def inspect(address: str) -> str:
    out = subprocess.run([sys.executable, "-m", "kube_vxlan_controller.cli", "inspect", "nets", NET, "--admin",
                          address], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_vni_change_converges_every_member_and_new_pods_and_packets_pass(cluster: Cluster, controller):
    c = controller(resync=600)
    create_members(cluster, "abc")
    pods = wait_for(lambda: members(cluster, "abc"), timeout=60, what="a, b, c running")
    wait_for(lambda: cluster.wired(pods, NET), what="a, b, c wired")
    assert wait_for(lambda: pings_all(cluster, pods), what="pings on VNI 100")
    before = inspect(c.admin_address)
    assert before.count("id:100 ") == 3 and "differs" not in before

    started = time.monotonic()
    set_network(cluster, "id=201 up")
    wait_for(lambda: all_show(cluster, pods, id=201), what="every member's kernel on VNI 201")
    took = time.monotonic() - started
    print(f"\nConfigMap patched → every member's kernel showed id 201 in {took:.2f}s")
    assert wait_for(lambda: cluster.wired(pods, NET) and pings_all(cluster, pods), what="pings on VNI 201")

    cluster.core.create_namespaced_pod("default", bare_pod("d", f"{NET} ip={overlay(4)}/24"))
    pods = wait_for(lambda: members(cluster, "abcd"), timeout=60, what="d running")
    assert wait_for(lambda: all_show(cluster, pods, id=201) and cluster.wired(pods, NET), what="d on VNI 201")
    assert wait_for(lambda: pings_all(cluster, pods), what="pings between all four")

    after = inspect(c.admin_address)
    assert after.count("id:201 ") == 4 and "id:100" not in after and "differs" not in after
    print(f"inspect before:\n{before}inspect after:\n{after}")

    # A pod whose annotation gives the network another VNI is no peer of the others, nor they of it.
    cluster.core.create_namespaced_pod("default", bare_pod("e", f"{NET} id=300 ip={overlay(5)}/24"))
    e = wait_for(lambda: (m := members(cluster, "e")) and cluster.link(m[0], NET) and m[0], timeout=60, what="e")
    wait_for(lambda: cluster.fdb(e, NET) == set() and vxlan(cluster, e)["id"] == 300, what="e alone on VNI 300")
    assert cluster.wired(pods, NET), "the members on VNI 201 hold exactly each other"
    for pod in pods[:3]:
        changed = wait_for(lambda: reasons(cluster, pod, "VxlanInterfaceChanged"), what="the Event")
        assert changed == [f"network {NET}: interface {NET} id 100 → 201 (link replaced, its addresses, routes and "
                           "fdb entries put back)"]
    assert reasons(cluster, pods[3], "VxlanInterfaceChanged") == []
    for pod in pods:
        wait_for(lambda: (cond := condition(one(cluster, pod.metadata.name))) and cond.status == "True"
                 and cond.message == f"{NET} 3/3 peers", what=f"{pod.metadata.name} Wired 3/3")


def test_port_mtu_routes_and_address_changes_converge_and_inspect_shows_the_kernel(cluster: Cluster, controller):
    c = controller(resync=600)
    create_members(cluster, "ab")
    pods = wait_for(lambda: members(cluster, "ab"), timeout=60, what="a, b running")
    wait_for(lambda: cluster.wired(pods, NET), what="a, b wired")

    set_network(cluster, "id=100 up dstport=4789 mtu=1400")
    wait_for(lambda: all_show(cluster, pods, port=4789, mtu=1400), what="port 4789 and MTU 1400 everywhere")
    assert wait_for(lambda: cluster.wired(pods, NET) and pings_all(cluster, pods), what="pings on port 4789")

    set_network(cluster, "id=100 up dstport=4789 mtu=1400 route=10.77.0.0/16:192.168.70.9")
    wait_for(lambda: all_show(cluster, pods, routes={"10.77.0.0/16 via 192.168.70.9"}), what="the route added")
    set_network(cluster, "id=100 up dstport=4789 mtu=1400")
    wait_for(lambda: all_show(cluster, pods, routes=set()), what="the route removed")
    cluster.core.patch_namespaced_pod("a", "default", {"metadata": {"annotations": {
        "vxlan.openvnf.org/networks": f"{NET} ip={overlay(7)}/24"}}})
    a, b = pods
    wait_for(lambda: vxlan(cluster, a)["addresses"] == {f"{overlay(7)}/24"}, what="a's new address, the old gone")
    assert wait_for(lambda: cluster.ping(b, overlay(7)), what="b pings a's new address")
    assert vxlan(cluster, a)["mtu"] == 1400 and vxlan(cluster, a)["port"] == 4789

    # b moves to another network: its old interface goes, the new one is made in the sidecar.
    cluster.core.patch_namespaced_pod("b", "default", {"metadata": {"annotations": {
        "vxlan.openvnf.org/networks": "vxeth3 ip=192.168.13.2/29"}}})
    wait_for(lambda: cluster.link(b, NET) is None and (cluster.link(b, "vxeth3") or {}).get("linkinfo", {}).get(
        "info_data", {}).get("id") == 103, what=f"b's {NET} removed and vxeth3 (id 103) created")
    wait_for(lambda: cluster.fdb(a, NET) == set(), what="a no longer has b as a peer")
    assert [m for m in reasons(cluster, b, "VxlanInterfaceChanged") if "removed" in m] == [
        f"interface {NET} removed: the pod no longer names its network"]
    # and names no network at all any more: its last interface goes too
    cluster.core.patch_namespaced_pod("b", "default", {"metadata": {"annotations": {
        "vxlan.openvnf.org/networks": None}}})
    wait_for(lambda: cluster.link(b, "vxeth3") is None, what="b's vxeth3 removed with its last network")

    # Drift made by hand shows in inspect as the kernel has it, with what differs.
    cluster.in_pod(a, ["ip", "link", "set", NET, "mtu", "1300"])
    shown = inspect(c.admin_address)
    assert "mtu:1300" in shown and "differs: mtu 1300 → 1400" in shown, shown


def test_a_change_made_while_the_controller_was_down_is_converged_when_it_starts(cluster: Cluster,
                                                                                   controller_process):
    first = controller_process("--resync", "600")
    create_members(cluster, "ab")
    pods = wait_for(lambda: members(cluster, "ab"), timeout=60, what="a, b running")
    wait_for(lambda: cluster.wired(pods, NET), timeout=60, what="a, b wired")
    first.kill()
    first.wait(timeout=10)
    set_network(cluster, "id=202 up")
    controller_process("--resync", "600")
    # a successor first waits out the killed one's Lease (6 s here), then lists and converges
    wait_for(lambda: all_show(cluster, pods, id=202), timeout=90, what="both on VNI 202 after the restart")
    assert wait_for(lambda: cluster.wired(pods, NET) and pings_all(cluster, pods), timeout=60,
                    what="pings on VNI 202")


def kept_networks(controller) -> float | None:
    return controller.metrics.registry.get_sample_value("kvc_networks_last_known_good")


def converging_since(sandbox, since: collections.Counter) -> collections.Counter:
    """The requests since `since` (`sidecarlog.requests`) that change something (all but reads)."""
    return sidecarlog.changes(sidecarlog.requests(sandbox.execs()) - since)


def test_a_deleted_configmap_keeps_every_member_wired_and_restoring_it_changes_nothing(cluster: Cluster, controller,
                                                                                       sandbox):
    c = controller(resync=3)
    cluster.create_example()
    gw = wait_for(lambda: (p := one(cluster, "gw")) and (r := condition(p, "Ready")) and r.status == "True" and p,
                  timeout=60, what="gw Ready")
    a, b = one(cluster, "a"), one(cluster, "b")
    for pod in (a, b, gw):
        cluster.in_pod(pod, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    assert wait_for(lambda: cluster.ping(a, "192.168.12.2"), what="a pings b through gw")
    since = sidecarlog.requests(sandbox.execs())

    cluster.core.delete_namespaced_config_map(CONFIGMAP, NAMESPACE)
    wait_for(lambda: kept_networks(c) == 4, what="4 networks on last known good")
    until = time.monotonic() + 30
    while time.monotonic() < until:  # 30 s of resyncs every 3 s: gw stays Ready and wired, pings pass
        gw = one(cluster, "gw")
        assert condition(gw, "Ready").status == "True" and condition(gw).status == "True", gw.status.conditions
        assert cluster.ping(a, "192.168.12.2"), "a no longer pings b"
        time.sleep(0.5)  # pacing of the watch, not a wait for a condition
    assert converging_since(sandbox, since) == {}
    for pod in (a, b, gw):
        kept = wait_for(lambda: reasons(cluster, pod, "VxlanNetworkLastKnownGood"), what="the Event")
        assert len(kept) == (2 if pod is gw else 1), kept

    # A new pod naming a network whose entry is gone waits, and says so.
    cluster.core.create_namespaced_pod("default", bare_pod("late", "vxeth3 ip=192.168.13.5/29"))
    late = wait_for(lambda: one(cluster, "late"), what="late created")
    said = wait_for(lambda: reasons(cluster, late, "VxlanNetworkConfigMissing"), what="late's Event")
    assert said == [f"network vxeth3: {NAMESPACE}/{CONFIGMAP} has no entry for it (deleted?): this pod waits until "
                    "it is restored"]
    assert one(cluster, "late").status.phase == "Pending"

    since = sidecarlog.requests(sandbox.execs())
    cluster.apply_network_configmap()
    wait_for(lambda: kept_networks(c) == 0, what="the entries restored")
    wait_for(lambda: (p := one(cluster, "late")) and p.status.phase == "Running", timeout=60,
             what="late set up once its network's entry is back")
    # a, b and gw: one more resync each since the restore (a re-read), and nothing to change.
    reads = {p.metadata.name: 0 for p in (a, b, gw)}

    def resynced() -> bool:
        for name in reads:
            reads[name] = (sidecarlog.requests(sandbox.execs()) - since)[name, "state"]
        return all(reads.values())

    wait_for(resynced, what="a, b and gw resynced since the restore")
    assert {key: n for key, n in converging_since(sandbox, since).items() if key[0] in reads} == {}
