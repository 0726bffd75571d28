"""PodWatcher: what it holds back, what it routes where, and how it rebuilds a crashed network actor."""

from __future__ import annotations

import threading

from actorfakes import FakeStream, member_ips, network_registry
from polling import wait_for

from kube_vxlan_controller.runtime.registry import Registry
from kube_vxlan_controller.messages import PeersChanged, PodRemoved, PodUpdate
from kube_vxlan_controller.model import Pod
from kube_vxlan_controller.settings import Settings


def test_watcher_holds_pods_until_the_configmap_was_read():
    from kube_vxlan_controller.actors.watcher import PodWatcher
    from kube_vxlan_controller.k8s.pods import PodsListed

    updates = []

    class Ref:
        def tell(self, message):
            updates.append(message)

    registry = Registry(pod_factory=lambda uid, key: Ref(), network_factory=lambda name, synced: Ref())
    pod = Pod(uid="u1", namespace="default", name="p", ip="10.0.0.1", init_agent_running=True,
              annotations={"vxlan.openvnf.org/networks": "vxeth0"}, labels={"vxlan.openvnf.org": "true"})
    configmap_late = threading.Event()
    streams = []

    def pod_stream(on_event):
        streams.append(FakeStream([PodsListed((pod,), "1")], on_event))
        return streams[-1]

    watcher = PodWatcher.start(
        settings=Settings(), registry=registry, pod_stream_factory=pod_stream,
        configmap_stream_factory=lambda on_change: FakeStream([{"vxeth0": "id=100"}], on_change, configmap_late),
    )
    wait_for(lambda: streams, what="the pod stream started")
    assert streams[0].delivered.wait(5)
    watcher.ask("flush")  # the mailbox is in order: the listed pods have been handled once this returns
    assert not [u for u in updates if isinstance(u, PodUpdate)]
    configmap_late.set()
    wait_for(lambda: [u for u in updates if isinstance(u, PodUpdate)], what="the held pod routed")
    update, *more = [u for u in updates if isinstance(u, PodUpdate)]  # to the pod and to its network
    assert more == [update]
    assert [spec.vni for spec in update.networks] == [100]


def test_a_crashed_network_actors_successor_rebuilds_membership_from_the_watchers_pod_index():
    from kube_vxlan_controller.actors.watcher import PodWatcher
    from kube_vxlan_controller.messages import Rebuild

    pods: dict = {}
    registry = network_registry(pods)
    watcher = PodWatcher(settings=Settings(), registry=registry, pod_stream_factory=None)
    watcher.config.update({"vxeth0": "id=100"})
    ann, label = {"vxlan.openvnf.org/networks": "vxeth0"}, {"vxlan.openvnf.org": "true"}
    listed = tuple(Pod(uid=f"u{i}", namespace="default", name=f"p{i}", ip=f"10.0.0.{i}", agent_running=True,
                       annotations=ann, labels=label) for i in range(1, 4))
    watcher._listed(listed)
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, what="three members")
    crashed = registry.networks()["vxeth0"]
    crashed.stop()  # what a crash leaves: a dead actor (the supervisor then asks the watcher to rebuild)
    watcher.on_receive(Rebuild("vxeth0"))
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, what="membership rebuilt")
    assert registry.networks()["vxeth0"] is not crashed
    for uid in ("u1", "u2", "u3"):  # every member heard the successor's whole snapshot
        wait_for(lambda: len(pods[uid].messages[-1].snapshot.members) == 3 if isinstance(
            pods[uid].messages[-1], PeersChanged) else False, what=f"{uid} told the rebuilt membership")


def test_only_pods_labelled_true_are_routed_and_a_relabelled_pod_leaves():
    from kube_vxlan_controller.actors.watcher import PodWatcher

    pods: dict = {}
    registry = network_registry(pods)
    watcher = PodWatcher(settings=Settings(), registry=registry, pod_stream_factory=None)
    watcher.config.update({"vxeth0": "id=100"})
    ann = {"vxlan.openvnf.org/networks": "vxeth0"}

    def pod(uid, ip, label):
        return Pod(uid=uid, namespace="default", name=uid, ip=ip, agent_running=True, annotations=ann,
                   labels={"vxlan.openvnf.org": label})

    watcher._listed((pod("a", "10.0.0.1", "true"), pod("b", "10.0.0.2", "true"), pod("off", "10.0.0.9", "false")))
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.2"}, what="the pods labelled true")
    assert "off" not in pods
    watcher._route(pod("b", "10.0.0.2", "no"))
    wait_for(lambda: member_ips(registry) == {"10.0.0.1"}, what="the relabelled pod left")
    assert isinstance(pods["b"].messages[-1], PodRemoved) and "b" not in registry.pods()


def test_a_deleted_configmap_keeps_members_on_their_last_good_options_and_new_pods_wait():
    from kube_vxlan_controller.actors.watcher import PodWatcher
    from kube_vxlan_controller.messages import ConfigChanged

    pods: dict = {}
    events: list = []
    registry = network_registry(pods)
    watcher = PodWatcher(settings=Settings(), registry=registry, pod_stream_factory=None,
                         events=lambda pod, reason, message: events.append((pod.name, reason)))
    watcher.on_receive(ConfigChanged({"vxeth0": "id=100"}))
    ann, label = {"vxlan.openvnf.org/networks": "vxeth0"}, {"vxlan.openvnf.org": "true"}

    def pod(uid, ip):
        return Pod(uid=uid, namespace="default", name=uid, ip=ip, agent_running=True, annotations=ann, labels=label)

    watcher._listed((pod("a", "10.0.0.1"), pod("b", "10.0.0.2")))
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.2"}, what="two members")
    told = len(pods["a"].messages)
    watcher.on_receive(ConfigChanged({}))
    watcher.on_receive(ConfigChanged({}))  # the same again: said once
    assert [m.networks[0].vni for m in pods["a"].messages[told:] if isinstance(m, PodUpdate)] == [100]
    watcher._route(pod("c", "10.0.0.3"))
    assert "c" not in pods and watcher.waiting.keys() == {"c"}
    assert sorted(events) == [("a", "VxlanNetworkLastKnownGood"), ("b", "VxlanNetworkLastKnownGood"),
                              ("c", "VxlanNetworkConfigMissing")]
    assert member_ips(registry) == {"10.0.0.1", "10.0.0.2"}
    watcher.on_receive(ConfigChanged({"vxeth0": "id=100"}))
    wait_for(lambda: member_ips(registry) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, what="c joined once restored")
    assert watcher.waiting == {} and len(events) == 3
