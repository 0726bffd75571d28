"""Pods the controller will not wire, in the watcher and the pod actor: each cause told once per pod (an
Event), never on every pod event or relist; the Wired condition of a pod routed nowhere written by the
watcher where a readiness gate waits for it; a routed pod's own actor judging it from the same causes.

The watcher runs unstarted (its handlers called directly, as the other watcher tests do) over a registry
whose pod and network actors are mocks that record what they are told."""

from __future__ import annotations

import dataclasses
from unittest.mock import Mock

from kube_vxlan_controller.actors.pod import PodActor
from kube_vxlan_controller.runtime.registry import Registry
from kube_vxlan_controller.runtime.scheduler import Scheduler
from kube_vxlan_controller.actors.watcher import PodWatcher
from kube_vxlan_controller.messages import PodRemoved, PodUpdate, Reroute
from kube_vxlan_controller.model import AgentSpec, Condition, Pod
from kube_vxlan_controller.settings import Settings
from polling import wait_for

NETWORKS = {"vxlan.openvnf.org/networks": "vxeth0"}
LABEL = {"vxlan.openvnf.org": "true"}


class Watched:
    """A watcher with recording actors, Events and conditions."""

    def __init__(self) -> None:
        self.pods: dict[str, Mock] = {}
        self.networks: dict[str, Mock] = {}
        self.events: list[tuple[str, str, str]] = []
        self.conditions: list[tuple[str, Condition, bool]] = []
        self.registry = Registry(pod_factory=lambda uid, key: self.pods.setdefault(uid, Mock()),
                                 network_factory=lambda name, synced: self.networks.setdefault(name, Mock()))
        self.watcher = PodWatcher(
            settings=Settings(namespace="kube-system"), registry=self.registry, pod_stream_factory=None,
            events=lambda pod, reason, message: self.events.append((pod.name, reason, message)),
            conditions=lambda pod, condition, transition: self.conditions.append((pod.name, condition, transition)))
        self.watcher.config.update({"vxeth0": "id=100"})

    @staticmethod
    def told(actor: Mock) -> list:
        """What an actor was told, in order."""
        return [call.args[0] for call in actor.tell.call_args_list]

    def reasons(self, name: str | None = None) -> list[str]:
        return [reason for pod, reason, _ in self.events if name is None or pod == name]


def pod(name: str, **fields) -> Pod:
    values = dict(uid=name, namespace="default", name=name, ip="10.0.0.1", agent_running=True, labels=LABEL,
                  annotations=NETWORKS)
    values.update(fields)
    return Pod(**values)


def test_each_cause_is_told_once_per_pod_not_on_every_pod_event_or_relist():
    w = Watched()
    yes = pod("yes", labels={"vxlan.openvnf.org": "yes"})
    bare = pod("bare", annotations={}, agent_spec=AgentSpec.MISSING)
    fine = pod("fine")
    for _ in range(3):
        w.watcher._listed((yes, bare, fine))
        w.watcher._route(dataclasses.replace(bare, resource_version="2"))
        w.watcher._route(dataclasses.replace(yes, ip="10.0.0.9"))
    assert w.reasons("yes") == ["VxlanLabelNotTrue"]
    assert w.reasons("bare") == ["VxlanSidecarMissing", "VxlanNetworksAnnotationMissing"]
    assert w.reasons("fine") == []
    assert w.events[0][2].startswith('label vxlan.openvnf.org is "yes", not "true": ')
    assert "yes" not in w.pods, "a pod whose label is not true is routed nowhere"
    # a routed pod's actor gets the causes with the pod, to judge its Wired condition from them
    update = w.told(w.pods["bare"])[-1]
    assert isinstance(update, PodUpdate) and [c.reason for c in update.causes] == ["SidecarMissing",
                                                                                    "NetworksAnnotationMissing"]


def test_a_cause_that_goes_away_and_comes_back_is_told_again_and_a_new_pod_is_told_anew():
    w = Watched()
    w.watcher._route(pod("p", annotations={}))
    w.watcher._route(pod("p"))
    w.watcher._route(pod("p", annotations={}))
    assert w.reasons("p") == ["VxlanNetworksAnnotationMissing"] * 2
    w.watcher._route(pod("p", annotations={"vxlan.openvnf.org/networks": "vxeth9"}))  # no valid network
    w.watcher._route(pod("p", annotations={"vxlan.openvnf.org/networks": "vxeth8"}))  # still none
    assert w.reasons("p")[2:] == ["VxlanNoValidNetwork", "VxlanNetworkInvalid", "VxlanNetworkInvalid"]
    w.watcher._gone("p")
    w.watcher._route(pod("p", annotations={}))  # deleted and back: the index forgot it
    assert w.reasons("p")[-1] == "VxlanNetworksAnnotationMissing" and len(w.reasons("p")) == 6


def test_a_restarted_watcher_does_not_tell_again_what_its_predecessor_told():
    w = Watched()
    w.watcher._listed((pod("yes", labels={"vxlan.openvnf.org": "yes"}),))
    successor = PodWatcher(settings=w.watcher.settings, registry=w.registry, pod_stream_factory=None,
                           events=w.watcher.events, index=w.watcher.index, config=w.watcher.config)
    successor._listed((pod("yes", labels={"vxlan.openvnf.org": "yes"}),))
    assert w.reasons() == ["VxlanLabelNotTrue"]


def test_a_gated_pod_routed_nowhere_gets_its_condition_once_and_an_ungated_one_none():
    w = Watched()
    gated = pod("gated", labels={"vxlan.openvnf.org": "yes"}, gated=True)
    w.watcher._route(gated)
    w.watcher._route(pod("plain", labels={"vxlan.openvnf.org": "yes"}))
    ((name, condition, transition),) = w.conditions
    assert (name, condition.status, condition.reason, transition) == ("gated", False, "LabelNotTrue", True)
    assert condition.message == w.events[0][2]
    w.watcher._route(dataclasses.replace(gated, wired=condition))  # the API holds it now: not written again
    assert len(w.conditions) == 1


def test_a_member_relabelled_false_leaves_and_its_condition_stops_saying_wired():
    w = Watched()
    member = pod("m", wired=Condition(True, "Wired", "vxeth0 1/1 peers"))
    w.watcher._listed((member,))
    w.watcher._route(dataclasses.replace(member, labels={"vxlan.openvnf.org": "false"}))
    assert isinstance(w.told(w.pods["m"])[-1], PodRemoved)
    assert isinstance(w.told(w.networks["vxeth0"])[-1], PodRemoved)
    assert [(name, c.reason, transition) for name, c, transition in w.conditions] == [("m", "LabelNotTrue", True)]
    w.watcher.on_receive(Reroute("m"))  # a late restart of its crashed actor: nothing is started for it
    assert "m" not in w.registry.pods()


def test_a_routed_pods_actor_says_the_first_cause_that_blocks_wiring_in_its_condition():
    scheduler = Scheduler().start()
    written = []
    ref = PodActor.start("u1", "default/p", executor=None, settings=Settings(resync=600), scheduler=scheduler,
                         conditions=lambda p, condition, transition: written.append(condition))
    w = Watched()
    bare = pod("p", uid="u1", annotations={}, init_agent_spec=AgentSpec.MISSING)
    w.watcher._route(bare)
    ref.tell(w.told(w.pods["u1"])[-1])
    wait_for(lambda: written, what="the condition")
    assert w.reasons() == ["VxlanInitAgentMissing", "VxlanNetworksAnnotationMissing"]
    assert written == [Condition(False, "NetworksAnnotationMissing", w.events[1][2])], "a missing init agent only warns"
    ref.stop()
    scheduler.stop()


def test_a_pod_relabelled_true_while_its_networks_entry_is_kept_waits_and_is_not_called_invalid():
    w = Watched()
    w.watcher._route(pod("p", labels={"vxlan.openvnf.org": "yes"}, annotations={}))
    w.watcher.config.update({})  # the ConfigMap deleted: vxeth0 runs on its last known good entry
    w.watcher._route(pod("p"))
    w.watcher._route(pod("p", resource_version="2"))
    assert "p" not in w.pods and "p" in w.watcher.waiting, "it waits as a new pod does"
    assert w.reasons("p") == ["VxlanLabelNotTrue", "VxlanNetworksAnnotationMissing", "VxlanNetworkConfigMissing"]
    w.watcher._configmap({"vxeth0": "id=100"})
    assert isinstance(w.told(w.pods["p"])[-1], PodUpdate) and len(w.reasons("p")) == 3
