"""ConditionWriter (k8s/podstatus.py): latest wins per pod, a status flip at once, message-only changes at
most once per interval — with a fake API and a fake scheduler, so nothing waits on a clock."""

from __future__ import annotations

import pytest

from kube_vxlan_controller.k8s.podstatus import ConditionWriter
from kube_vxlan_controller.model import Condition, Pod
from polling import wait_for

POD = Pod(uid="u1", namespace="default", name="p1", ip="10.0.0.1")


class FakeCore:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict]] = []

    def patch_namespaced_pod_status(self, name, namespace, body, _request_timeout=None):
        self.patches.append((name, body))


class FakeCluster:
    def __init__(self) -> None:
        self.api = FakeCore()

    def core(self):
        return self.api


class FakeScheduler:
    def __init__(self) -> None:
        self.reminders: list[tuple[float, object, str]] = []

    def tell_later(self, delay, ref, message) -> None:
        self.reminders.append((delay, ref, message))


@pytest.fixture
def setup():
    """(fake cluster, fake scheduler, the clock's [now], a writer with a 10 s message interval)"""
    cluster, scheduler, now = FakeCluster(), FakeScheduler(), [100.0]
    writer = ConditionWriter(cluster, scheduler, message_interval=10, clock=lambda: now[0])
    yield cluster, scheduler, now, writer
    writer.close()


def messages(cluster: FakeCluster) -> list[str]:
    return [body["status"]["conditions"][0]["message"] for _, body in cluster.api.patches]


def test_message_only_changes_wait_for_the_interval_and_the_newest_is_written(setup):
    cluster, scheduler, now, writer = setup
    writer.write(POD, Condition(True, "Wired", "vxeth0 1/1 peers"), True)
    wait_for(lambda: len(cluster.api.patches) == 1, what="the flip written at once")
    now[0] = 101.0
    writer.write(POD, Condition(True, "Wired", "vxeth0 2/2 peers"), False)
    writer.write(POD, Condition(True, "Wired", "vxeth0 3/3 peers"), False)
    assert [delay for delay, _, _ in scheduler.reminders] == [9.0]  # one reminder for both
    assert len(cluster.api.patches) == 1
    now[0] = 110.0
    _, ref, uid = scheduler.reminders.pop()
    ref.tell(uid)
    wait_for(lambda: len(cluster.api.patches) == 2, what="the deferred change")
    assert messages(cluster) == ["vxeth0 1/1 peers", "vxeth0 3/3 peers"]


def test_a_new_reason_is_written_at_once_even_within_the_interval(setup):
    cluster, scheduler, now, writer = setup
    writer.write(POD, Condition(False, "SettingUp", "waiting for the init agent"), True)
    wait_for(lambda: len(cluster.api.patches) == 1, what="the first write")
    writer.write(POD, Condition(False, "Failing", "setup exited 1"), False)
    wait_for(lambda: len(cluster.api.patches) == 2, what="the new reason")
    assert scheduler.reminders == []


def test_a_flip_is_written_at_once_even_within_the_interval(setup):
    cluster, scheduler, now, writer = setup
    writer.write(POD, Condition(True, "Wired", "vxeth0 1/1 peers"), True)
    wait_for(lambda: len(cluster.api.patches) == 1, what="the first write")
    writer.write(POD, Condition(True, "Wired", "vxeth0 2/2 peers"), False)  # deferred
    writer.write(POD, Condition(False, "PeersMissing", "vxeth0 2/3 peers"), True)
    wait_for(lambda: len(cluster.api.patches) == 2, what="the flip")
    assert messages(cluster)[-1] == "vxeth0 2/3 peers"
    assert cluster.api.patches[-1][1]["status"]["conditions"][0]["status"] == "False"
    _, ref, uid = scheduler.reminders.pop()
    ref.tell(uid)  # the reminder of the deferred change finds nothing left to write: nothing submitted
    assert len(cluster.api.patches) == 2


def test_message_only_changes_of_all_pods_share_a_budget_taken_in_turn(setup):
    cluster, scheduler, now, writer = setup
    pods = [Pod(uid=f"u{i}", namespace="default", name=f"p{i}", ip=f"10.0.0.{i}") for i in range(1, 5)]
    for pod in pods:
        writer.write(pod, Condition(True, "Wired", "vxeth0 1/1 peers"), True)
    wait_for(lambda: len(cluster.api.patches) == 4, what="the flips, all at once")
    now[0] = 130.0  # every pod's own interval is over
    for pod in pods:
        writer.write(pod, Condition(True, "Wired", "vxeth0 2/2 peers"), False)
    wait_for(lambda: len(cluster.api.patches) == 5, what="the first message-only change, at once")
    # the others wait for their turns, 1 / MESSAGE_RATE apart
    assert [delay for delay, _, _ in scheduler.reminders] == [0.5, 1.0, 1.5]
    writer.write(pods[3], Condition(False, "PeersMissing", "vxeth0 2/3 peers"), True)
    wait_for(lambda: len(cluster.api.patches) == 6, what="a flip, at once whatever the budget")
    assert messages(cluster)[-1] == "vxeth0 2/3 peers"
    for delay, ref, uid in scheduler.reminders:
        now[0] = 130.0 + delay
        ref.tell(uid)
    wait_for(lambda: len(cluster.api.patches) == 8, what="the two deferred changes (the flipped pod's is written)")
    assert sorted(messages(cluster)[-2:]) == ["vxeth0 2/2 peers"] * 2
