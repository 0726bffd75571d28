"""The controller end to end on the sandbox: interfaces, fdb, pings, churn and faults (root)."""

from __future__ import annotations

import signal

import pytest

from .conftest import Cluster, controller_settings, deployment
from polling import wait_for

pytestmark = pytest.mark.root

NET = "vxeth0"  # id 100 in the bundle's ConfigMap


def bare_pod(name: str, networks: str, labels: dict | None = None) -> dict:
    """A pod with a fixed name, as a StatefulSet makes them."""
    template = deployment(name, networks)["spec"]["template"]
    template["metadata"]["labels"].update(labels or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]},
            "spec": template["spec"]}


def test_seed_example_pods_ping_each_other_through_gw(cluster: Cluster, controller):
    controller()
    cluster.create_example()
    pods = wait_for(lambda: len(cluster.running()) == 3 and cluster.running(), what="a, b and gw running")
    by_app = {p.metadata.labels["run"]: p for p in pods}
    a, b, gw = by_app["a"], by_app["b"], by_app["gw"]
    wait_for(lambda: cluster.fdb(a, "vxeth1") == {gw.status.pod_ip}, what="a's vxeth1 fdb points at gw")
    wait_for(lambda: cluster.fdb(gw, "vxeth2") == {b.status.pod_ip}, what="gw's vxeth2 fdb points at b")
    link = cluster.link(a, "vxeth1")
    assert link["linkinfo"]["info_data"]["id"] == 101
    assert "UP" in link["flags"]
    assert any(addr["local"] == "192.168.11.2" and addr["prefixlen"] == 29 for addr in link["addr_info"])
    for pod in (a, b, gw):  # routes through gw need forwarding in gw; a and b need none
        cluster.in_pod(pod, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    assert wait_for(lambda: cluster.ping(a, "192.168.12.2"), what="a pings b through gw")
    assert wait_for(lambda: cluster.ping(b, "192.168.11.2"), what="b pings a through gw")


def test_scale_3_10_2_every_fdb_holds_exactly_the_other_members(cluster: Cluster, controller):
    c = controller()
    cluster.create_deployment("s", NET, replicas=3)
    for replicas in (3, 10, 2):
        cluster.scale("s", replicas)
        pods = wait_for(lambda: len(cluster.running("run=s")) == replicas and cluster.running("run=s"),
                        timeout=60, what=f"{replicas} running pods")
        wait_for(lambda: cluster.wired(cluster.running("run=s"), NET), timeout=60,
                 what=f"{replicas} pods wired to each other")
        assert len(pods) == replicas
    cluster.scale("s", 0)
    wait_for(lambda: NET not in c.registry.networks(), what="the empty network's actor stopped")


@pytest.mark.parametrize("watch_gap", [False, True], ids=["watched", "across-a-watch-gap"])
def test_pod_recreated_with_same_name_gets_fresh_setup(cluster: Cluster, controller, watch_gap):
    c = controller()
    cluster.create_deployment("peer", NET)
    cluster.core.create_namespaced_pod("default", bare_pod("s-0", NET))
    peer = wait_for(lambda: cluster.running("run=peer"), what="peer running")[0]
    first = wait_for(lambda: cluster.running("run=s-0"), what="s-0 running")[0]
    wait_for(lambda: cluster.wired([peer, first], NET), what="s-0 and peer wired")
    old_ip = first.status.pod_ip

    if watch_gap:  # the original's bug: deleted and re-created while nobody watched (it keyed pods by name)
        blind_the_watcher(c, seconds=5.0)
    cluster.core.delete_namespaced_pod("s-0", "default")
    wait_for(lambda: cluster.sandbox.pod("default", "s-0") is None, what="s-0 deleted")
    cluster.core.create_namespaced_pod("default", bare_pod("s-0", NET))
    if watch_gap:
        assert not c.tree.watcher.proxy().streams.get(timeout=5), "the gap was too short"
    second = wait_for(lambda: [p for p in cluster.running("run=s-0") if p.metadata.uid != first.metadata.uid],
                      timeout=30, what="the new s-0 running")[0]
    wait_for(lambda: cluster.wired([peer, second], NET), what="the new s-0 and peer wired")
    assert second.status.pod_ip != old_ip  # the sandbox hands out IPs round robin
    assert cluster.fdb(peer, NET) == {second.status.pod_ip}
    assert cluster.link(second, NET) is not None


def blind_the_watcher(controller, seconds: float) -> None:
    """Crash the pod watcher and make its successor wait `seconds` before it lists: nothing watches pods
    meanwhile."""
    from kube_vxlan_controller.actors.watcher import StreamDied
    from kube_vxlan_controller.backoff import Backoff

    controller.tree.watcher_backoff = Backoff(initial=seconds, cap=seconds, jitter=0.0)
    watcher = controller.tree.watcher
    watcher.tell(StreamDied("pod-stream", "injected by the test"))
    wait_for(lambda: not watcher.is_alive() and controller.tree.watcher is not watcher, what="the watcher restarted")


def test_hung_pod_delays_only_itself(cluster: Cluster, controller):
    running_controller = controller(exec_deadline=2.0)
    cluster.sandbox.faults.hang_execs("hang=yes")
    cluster.core.create_namespaced_pod("default", bare_pod("stuck", NET, {"hang": "yes"}))
    cluster.create_deployment("fine", NET, replicas=4)
    # The stuck pod never gets past its init agent; the others converge among themselves meanwhile.
    fine = wait_for(lambda: len(cluster.running("run=fine")) == 4 and cluster.running("run=fine"),
                    timeout=30, what="4 fine pods running")
    wait_for(lambda: cluster.wired(cluster.running("run=fine"), NET), timeout=30, what="fine pods wired")
    assert not cluster.running("run=stuck")
    # The precondition that makes this test mean something: the controller did hit the hang.
    wait_for(lambda: any(s.pod_key == "default/stuck" and s.status == "hung"
                         for s in running_controller.board.all()), timeout=10, what="stuck pod reported hung")

    cluster.sandbox.faults.lift_hangs()
    stuck = wait_for(lambda: cluster.running("run=stuck"), timeout=60, what="stuck pod running after the lift")
    wait_for(lambda: cluster.wired(fine + stuck, NET), timeout=60, what="all five wired")


def test_fdb_entry_deleted_by_hand_comes_back_within_a_resync(cluster: Cluster, controller):
    controller(resync=3.0)
    cluster.create_deployment("r", NET, replicas=2)
    pods = wait_for(lambda: len(cluster.running("run=r")) == 2 and cluster.running("run=r"), what="2 pods")
    wait_for(lambda: cluster.wired(pods, NET), what="2 pods wired")
    first, second = pods
    out = cluster.in_pod(first, ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", NET,
                                 "dst", second.status.pod_ip])
    assert out.returncode == 0, out.stderr
    assert cluster.fdb(first, NET) == set()
    wait_for(lambda: cluster.fdb(first, NET) == {second.status.pod_ip}, timeout=3.0 * 2 + 5,
             what="the deleted entry restored by resync")


BAD = {
    "noid": "vxeth0, nosuchnet",
    "badid": "vxeth0, vxeth1 id=abc",
    "badroute": "vxeth0, vxeth1 route=garbage",
    "longname": "vxeth0, vxeth1 name=averyveryverylongname",
    "shell": "vxeth0, vxeth1 ip=1.2.3.4/24;reboot, vxeth2 dev=$(reboot)",
    "huge": "vxeth0, vxeth1 ip=" + "9" * (1024 * 1024),
}


def test_bad_annotations_are_reported_and_valid_networks_still_work(cluster: Cluster, controller):
    from loguru import logger

    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    controller()
    cluster.create_deployment("good", NET)
    for name, networks in BAD.items():
        cluster.core.create_namespaced_pod("default", bare_pod(name, networks, {"bad": "yes"}))
    bad = wait_for(lambda: len(cluster.running("bad=yes")) == len(BAD) and cluster.running("bad=yes"),
                   timeout=60, what="every pod with a bad annotation running")
    good = wait_for(lambda: cluster.running("run=good"), what="good pod running")
    wait_for(lambda: cluster.wired(bad + good, NET), timeout=60, what="vxeth0 wired in every pod")
    for pod in bad:
        assert cluster.link(pod, "vxeth1") is None, f"{pod.metadata.name} got an invalid vxeth1"

    def events_for_every_bad_pod():
        events = cluster.core.list_namespaced_event("default").items
        named = {e.involved_object.name for e in events if e.reason == "VxlanNetworkInvalid"}
        return named >= set(BAD) and named
    wait_for(events_for_every_bad_pod, what="a VxlanNetworkInvalid event on every bad pod")
    logger.remove(sink)
    for name in BAD:
        assert any(f"pod default/{name}: network" in line for line in errors), f"no error logged for {name}"


def test_controller_killed_while_pods_churn_converges_after_restart(cluster: Cluster, controller_process):
    first = controller_process()
    cluster.create_deployment("k", NET, replicas=3)
    wait_for(lambda: len(cluster.running("run=k")) == 3 and cluster.wired(cluster.running("run=k"), NET),
             timeout=60, what="3 pods wired")
    cluster.scale("k", 6)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # While it is down: more churn, and one pod deleted outright.
    victim = cluster.running("run=k")[0]
    cluster.core.delete_namespaced_pod(victim.metadata.name, "default")
    cluster.scale("k", 5)

    controller_process()
    wait_for(lambda: len(cluster.running("run=k")) == 5 and cluster.wired(cluster.running("run=k"), NET),
             timeout=90, what="5 pods wired after the restart")
    assert victim.status.pod_ip not in {p.status.pod_ip for p in cluster.running("run=k")}  # so wired excludes it


def test_pod_whose_network_is_removed_from_its_annotation_leaves_every_peer_fdb(cluster: Cluster, controller):
    controller()
    cluster.create_deployment("m", f"{NET}, vxeth1", replicas=3)
    pods = wait_for(lambda: len(cluster.running("run=m")) == 3 and cluster.running("run=m"), what="3 pods")
    wait_for(lambda: cluster.wired(pods, NET) and cluster.wired(pods, "vxeth1"), what="3 pods wired on both")
    leaver, *stayers = pods
    cluster.core.patch_namespaced_pod(leaver.metadata.name, "default",
                                      {"metadata": {"annotations": {"vxlan.openvnf.org/networks": "vxeth1"}}})
    wait_for(lambda: cluster.wired(stayers, NET), what=f"{NET} without the leaver")
    assert cluster.wired(pods, "vxeth1"), "the other network is untouched"


def test_pod_whose_sidecar_agent_terminates_leaves_then_rejoins(tmp_path):
    from kubernetes.stream import stream

    from kube_vxlan_controller.controller import Controller
    from kvc_sandbox import Sandbox

    # A sandbox whose containers take 3 s to restart, so the agent's absence is long enough to see.
    with Sandbox(workdir=tmp_path, restart_delay=3.0) as sandbox:
        cluster = Cluster(sandbox)
        cluster.apply_network_configmap()
        running_controller = Controller(controller_settings(sandbox)).start()
        try:
            _leave_and_rejoin(cluster, stream)
        finally:
            running_controller.stop()


def _leave_and_rejoin(cluster: Cluster, stream) -> None:
    cluster.create_deployment("t", NET, replicas=3)
    pods = wait_for(lambda: len(cluster.running("run=t")) == 3 and cluster.running("run=t"), what="3 pods")
    wait_for(lambda: cluster.wired(pods, NET), what="3 pods wired")
    leaver, *stayers = pods
    stream(cluster.core.connect_get_namespaced_pod_exec, leaver.metadata.name, "default",
           container="vxlan-controller-agent", command=["kill", "-TERM", "1"], stdout=True, stderr=True)
    wait_for(lambda: cluster.wired(stayers, NET), timeout=3.0, what="peers drop the pod while its agent is down")
    wait_for(lambda: cluster.wired(pods, NET), timeout=30, what="the pod rejoins once its agent restarted")
