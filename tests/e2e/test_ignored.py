"""Pods the selector matches but the controller will not wire (or not as they need), end to end on the
sandbox (netns runtime): each cause gets its Event once (counted through the API, across pod updates, a
relist and resyncs); a pod with the readiness gate gets its Wired condition with the Event's words where
the cause blocks wiring, and the kernel's truth where it does not (a pod without init agent gets its
interface from the sidecar; the netns runtime does not enforce capabilities); a pod without a sidecar is
still set up and released as before."""

from __future__ import annotations

import collections

import pytest
from polling import wait_for

from e2e.conftest import deployment
from kube_vxlan_controller.wired import CONDITION_TYPE

pytestmark = pytest.mark.root

#: pod → the reasons of the Events it must get, the first one also its condition's
EXPECTED = {
    "label": ["VxlanLabelNotTrue"],
    "off": ["VxlanLabelNotTrue"],
    "noinit": ["VxlanInitAgentMissing"],
    "noside": ["VxlanSidecarMissing"],
    "nocap": ["VxlanSidecarLacksNetAdmin"],
    "noann": ["VxlanNetworksAnnotationMissing"],
    "invalid": ["VxlanNoValidNetwork", "VxlanNetworkInvalid"],
}
#: not gated: gets its Event, and no condition
UNGATED = "off"
#: causes that only warn: the condition is what the kernel shows
WARNED = ("noinit", "nocap")


def manifest(name: str) -> dict:
    template = deployment(name, "vxeth9" if name == "invalid" else "vxeth1")["spec"]["template"]
    meta, spec = template["metadata"], template["spec"]
    meta["labels"]["ignored"] = "yes"
    if name in ("label", "off"):
        meta["labels"]["vxlan.openvnf.org"] = "yes" if name == "label" else "false"
    if name == "noinit":
        del spec["initContainers"]
    if name == "noside":
        spec["containers"] = spec["containers"][:1]
    if name == "nocap":
        del spec["containers"][1]["securityContext"]
    if name in ("noann", "late"):
        del meta["annotations"]
    if name == "late":
        spec["containers"] = spec["containers"][:1]
    if name != UNGATED:
        spec["readinessGates"] = [{"conditionType": CONDITION_TYPE}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **meta}, "spec": spec}


def told(cluster) -> collections.Counter:
    """(pod, reason) → how many Events the controller recorded."""
    return collections.Counter((e.involved_object.name, e.reason)
                               for e in cluster.core.list_namespaced_event("default").items
                               if e.reason.startswith("Vxlan"))


def wired_condition(cluster, name: str):
    pod = cluster.core.read_namespaced_pod(name, "default")
    return next((c for c in pod.status.conditions or [] if c.type == CONDITION_TYPE), None)


def test_each_cause_gets_its_event_once_and_a_gated_pod_its_condition(cluster, controller, sandbox):
    for name in EXPECTED:
        cluster.core.create_namespaced_pod("default", manifest(name))
    controller(resync=0.5)
    everything = {(name, reason) for name, reasons in EXPECTED.items() for reason in reasons}
    wait_for(lambda: set(told(cluster)) >= everything, timeout=60, what="every cause's Event")
    events = {(e.involved_object.name, e.reason): e for e in cluster.core.list_namespaced_event("default").items}
    for name, reasons in EXPECTED.items():
        if name in (UNGATED, *WARNED):
            continue
        want = events[(name, reasons[0])]
        wait_for(lambda: (c := wired_condition(cluster, name)) and (c.status, c.reason, c.message) == (
            "False", reasons[0][len("Vxlan"):], want.message), timeout=30, what=f"{name}'s Wired condition")
    assert wired_condition(cluster, UNGATED) is None
    # warned, and wired all the same: each other's only peer on vxeth1, the interfaces as the kernel has them
    for name in WARNED:
        wait_for(lambda: (c := wired_condition(cluster, name)) and (c.status, c.reason, c.message) == (
            "True", "Wired", "vxeth1 1/1 peers"), timeout=30, what=f"{name} wired")
    warned = [cluster.core.read_namespaced_pod(name, "default") for name in WARNED]
    assert cluster.wired(warned, "vxeth1")
    assert cluster.link(warned[0], "vxeth1")["linkinfo"]["info_data"]["id"] == 101, "made by the sidecar"
    # the pod without sidecar was set up and released all the same: it runs, with its interface
    noside = wait_for(lambda: (p := cluster.core.read_namespaced_pod("noside", "default")).status.phase == "Running"
                      and p, timeout=30, what="noside running")
    assert cluster.link(noside, "vxeth1")["linkinfo"]["info_data"]["id"] == 101

    # Pod updates, a relist (history compacted, watches dropped) and resyncs tell nothing again. A pod
    # created after them all is told last: once its Events are there, the watcher has seen everything before.
    for name in EXPECTED:
        cluster.core.patch_namespaced_pod(name, "default", {"metadata": {"annotations": {"touched": "1"}}})
    sandbox.faults.compact()
    sandbox.faults.drop_watches()
    for name in EXPECTED:
        cluster.core.patch_namespaced_pod(name, "default", {"metadata": {"annotations": {"touched": "2"}}})
    cluster.core.create_namespaced_pod("default", manifest("late"))
    late = {("late", "VxlanSidecarMissing"), ("late", "VxlanNetworksAnnotationMissing")}
    wait_for(lambda: late <= set(told(cluster)), timeout=30, what="the late pod's Events")
    counts = told(cluster)
    assert {key: n for key, n in counts.items() if key[0] != "late"} == {key: 1 for key in everything}, \
        "each cause told once"
