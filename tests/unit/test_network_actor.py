"""NetworkActor: it publishes one snapshot for a burst of member changes, and retires with its last pod."""

from __future__ import annotations

import dataclasses

from actorfakes import SPEC, member_ips, network_registry, running_pod
from polling import wait_for

from kube_vxlan_controller.actors.network import NetworkActor
from kube_vxlan_controller.runtime.registry import Registry
from kube_vxlan_controller.messages import PeersChanged, PodUpdate, Synced
from kube_vxlan_controller.model import Pod
from kube_vxlan_controller.options import resolve
from kube_vxlan_controller.settings import Settings


def test_network_publishes_nothing_before_synced_then_one_snapshot_for_a_burst():
    received = []

    class Recorder:
        def tell(self, message):
            received.append(message)

    registry = Registry(pod_factory=None, network_factory=None)
    registry.existing_pod = lambda uid: Recorder()
    net = NetworkActor.start("vxeth0", registry=registry)
    for i in range(20):
        net.tell(PodUpdate(running_pod(f"u{i}", f"10.0.0.{i + 1}"), SPEC))
    assert net.proxy().current().get(timeout=5).members == ()
    assert received == []
    net.tell(Synced())
    wait_for(lambda: len(received) == 20, what="one snapshot per member")
    assert len({id(m.snapshot) for m in received}) == 1
    assert len(received[0].snapshot.members) == 20


def test_a_network_with_no_pod_left_retires_itself_and_the_next_pod_starts_a_new_one():
    from kube_vxlan_controller.actors.watcher import PodWatcher

    pods: dict = {}
    registry = network_registry(pods)
    watcher = PodWatcher(settings=Settings(), registry=registry, pod_stream_factory=None)
    watcher.config.update({"vxeth0": "id=100"})
    watcher._listed(())
    ann = {"vxlan.openvnf.org/networks": "vxeth0"}

    def pod(uid, ip, running=True):
        return Pod(uid=uid, namespace="default", name=uid, ip=ip, agent_running=running, annotations=ann,
                   labels={"vxlan.openvnf.org": "true"})

    watcher._route(pod("a", "10.0.0.1"))
    watcher._route(pod("b", "10.0.0.2"))
    first = registry.networks()["vxeth0"]
    watcher._route(pod("b", "10.0.0.3"))  # a member's IP changes: still two members
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.3"}, what="two members")
    watcher._gone("a")
    watcher._route(pod("b", "10.0.0.3", running=False))  # not a member, but it still names the network
    wait_for(lambda: member_ips(registry) == set(), what="no member")
    assert first.is_alive() and registry.networks()["vxeth0"] is first
    watcher._gone("b")  # no pod names it any more
    wait_for(lambda: not first.is_alive() and "vxeth0" not in registry.networks(), what="the network retired")
    assert any(isinstance(m, PeersChanged) and m.snapshot.members == () for m in pods["b"].messages)
    watcher._route(pod("c", "10.0.0.4"))  # a new pod: a new actor, synced from its first member
    wait_for(lambda: member_ips(registry) == {"10.0.0.4"}, what="a new network actor")
    assert registry.networks()["vxeth0"] is not first


def test_a_network_with_underlay_ipv6_lists_its_dual_stack_members_by_their_ipv6_address():
    registry = Registry(pod_factory=None, network_factory=None)
    registry.existing_pod = lambda uid: None
    net = NetworkActor.start("vxeth0", registry=registry)
    (spec,) = resolve("vxeth0 underlay=ipv6", {"vxeth0": "id=100"}, pod_key="default/a").networks
    pod = dataclasses.replace(running_pod("u1", "10.0.0.1"), ips=("10.0.0.1", "fd00::1"))
    net.tell(PodUpdate(pod, (spec,)))
    net.tell(Synced())
    wait_for(lambda: net.proxy().current().get(timeout=5).members, what="a member")
    assert [m.ip for m in net.proxy().current().get(timeout=5).members] == ["fd00::1"]
