"""The vxlan.openvnf.org/Wired condition, end to end on the sandbox (netns runtime): True with the peer counts
once the kernel holds every peer, False with a reason while it does not, written only when it changes,
and — as a readiness gate — holding the pod's Ready until it is True (the sandbox computes Ready as the
kubelet does). The truth it is checked against is the kernel's fdb, read in the pods' namespaces."""

from __future__ import annotations

import pytest
import sidecarlog
from polling import wait_for
from seedexample import assert_ready_only_once_wired

from kube_vxlan_controller.wired import CONDITION_TYPE

pytestmark = pytest.mark.root

EXAMPLE_MESSAGES = {"a": "vxeth1 1/1 peers", "b": "vxeth2 1/1 peers", "gw": "vxeth1 1/1 peers, vxeth2 1/1"}


def conditions(pod) -> dict[str, object]:
    return {c.type: c for c in pod.status.conditions or []}


def condition(pod, kind: str = CONDITION_TYPE):
    return conditions(pod).get(kind)


def one(cluster, app: str):
    pods = cluster.pods(f"run={app}")
    return pods[0] if len(pods) == 1 else None


def wired_as(cluster, app: str, status: str, reason: str, message: str | None = None):
    """The pod of `app` once its Wired condition is (status, reason[, message]), else None."""
    pod = one(cluster, app)
    c = pod and condition(pod)
    if c and (c.status, c.reason) == (status, reason) and (message is None or c.message == message):
        return pod
    return None


def test_the_seed_example_is_wired_with_peer_counts_and_gw_ready_only_once_wired(cluster, controller, sandbox):
    cluster.create_example()
    controller()
    pods = {}
    for app, message in EXAMPLE_MESSAGES.items():
        pods[app] = wait_for(lambda: wired_as(cluster, app, "True", "Wired", message), timeout=60,
                             what=f"{app} Wired: {message}")
    assert cluster.wired([pods["a"], pods["gw"]], "vxeth1") and cluster.wired([pods["b"], pods["gw"]], "vxeth2")
    gw = wait_for(lambda: (p := one(cluster, "gw")) and condition(p, "Ready").status == "True" and p,
                  what="gw Ready once wired")
    assert_ready_only_once_wired(sandbox.kubeconfig, "run=gw")
    assert gw.spec.readiness_gates[0].condition_type == CONDITION_TYPE


def test_the_condition_is_patched_only_when_it_changes(cluster, controller, sandbox):
    cluster.create_example()
    controller(resync=0.5)
    for app, message in EXAMPLE_MESSAGES.items():
        wait_for(lambda: wired_as(cluster, app, "True", "Wired", message), timeout=60, what=f"{app} wired")
    gw = one(cluster, "gw")
    patches = sandbox.patches("pods", "default", gw.metadata.name, "status")
    since = condition(gw).last_transition_time
    reads = fdb_reads(sandbox, gw.metadata.name)
    # three resyncs of gw later (each re-reads its fdb and judges it again): not one more patch
    wait_for(lambda: fdb_reads(sandbox, gw.metadata.name) >= reads + 3, timeout=30, what="three resyncs of gw")
    assert sandbox.patches("pods", "default", gw.metadata.name, "status") == patches
    assert 1 <= patches <= 4, "wired (setting up is not written to a pod with no condition), a step or two between"
    assert condition(one(cluster, "gw")).last_transition_time == since


def fdb_reads(sandbox, pod: str) -> int:
    return sidecarlog.requests(sandbox.execs())[pod, "state"]


def test_a_member_that_cannot_add_a_new_peer_is_not_wired_until_it_can(cluster, controller, sandbox):
    cluster.create_example()
    controller()
    for app, message in EXAMPLE_MESSAGES.items():
        wait_for(lambda: wired_as(cluster, app, "True", "Wired", message), timeout=60, what=f"{app} wired")
    sandbox.faults.hang_execs("run=gw")
    cluster.scale("a", 2)
    hung = wait_for(lambda: wired_as(cluster, "gw", "False", "Hung"), timeout=60, what="gw not wired: its exec hangs")
    assert condition(hung).message.startswith("vxeth1 ?/2 peers, vxeth2 ?/1: ")
    assert len(cluster.fdb(hung, "vxeth1")) == 1, "the kernel agrees: gw lacks the new peer"
    # the kubelet follows the gate after the condition's write, not with it (the sandbox's as a real one)
    wait_for(lambda: condition(one(cluster, "gw"), "Ready").status == "False", what="gw not Ready")
    # the condition speaks of the pod's own fdb: both a's hold both their peers (gw holds only one of them)
    wait_for(lambda: len(both := cluster.running("run=a")) == 2 and all(wired_as_pod(p, "vxeth1 2/2 peers")
                                                                       for p in both),
             timeout=60, what="both a's wired to each other and gw")
    sandbox.faults.lift_hangs()
    gw = wait_for(lambda: wired_as(cluster, "gw", "True", "Wired", "vxeth1 2/2 peers, vxeth2 1/1"), timeout=60,
                  what="gw wired to both a's")
    assert len(cluster.fdb(gw, "vxeth1")) == 2
    wait_for(lambda: condition(one(cluster, "gw"), "Ready").status == "True", what="gw Ready again")


def wired_as_pod(pod, message: str) -> bool:
    c = condition(pod)
    return c is not None and c.message == message


def test_a_setup_that_fails_leaves_the_pod_unwired_and_not_ready(cluster, controller):
    from e2e.conftest import deployment

    bad = deployment("bad", "vxeth1 ip=192.168.11.5/29 route=10.9.0.0/24:10.8.0.1")
    bad["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": CONDITION_TYPE}]
    cluster.apps.create_namespaced_deployment("default", bad)
    controller()
    failing = wait_for(lambda: wired_as(cluster, "bad", "False", "Failing"), timeout=60, what="setup failing")
    assert "exited" in condition(failing).message
    # Setup gives up after three attempts and releases the init agent anyway (an Event says so); then the
    # sidecar keeps converging the interface to its options, and fails the same way: the condition stays
    # False (SetupFailed, then Failing at the sidecar's first try), naming the error.
    pod = wait_for(lambda: (p := one(cluster, "bad")) and p.status.phase == "Running" and p, timeout=60,
                   what="bad running: the init agent released anyway")
    events = cluster.core.list_namespaced_event("default").items
    assert any(e.involved_object.name == pod.metadata.name and e.reason == "VxlanSetupFailed" for e in events)
    assert condition(pod).status == "False" and condition(pod).reason in ("SetupFailed", "Failing")
    assert "Nexthop has invalid gateway" in condition(pod).message
    assert condition(pod, "Ready").status == "False" and condition(pod, "Ready").reason in (
        "ReadinessGatesNotReady", "ContainersNotReady")
