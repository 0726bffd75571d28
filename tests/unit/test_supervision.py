"""Supervision: restart intensity (`supervision.Intensity`) and one level of the tree (`actors.supervisor`)."""

from __future__ import annotations

import threading

import pykka
import pytest

from kube_vxlan_controller.actors.supervisor import Supervisor, child_failed
from kube_vxlan_controller.messages import ChildFailed
from kube_vxlan_controller.metrics import Metrics
from kube_vxlan_controller.supervision import Intensity
from polling import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_intensity_allows_r_restarts_in_any_t_seconds():
    clock = Clock()
    intensity = Intensity(3, 5.0, clock)
    assert [intensity.allow() for _ in range(3)] == [True, True, True]
    clock.now = 4.9
    assert not intensity.allow()  # a 4th within 5 s
    clock.now = 10.0
    assert intensity.allow() and len(intensity) == 1  # the old ones left the window
    with pytest.raises(ValueError):
        Intensity(-1, 5.0)


class Recorder:
    def __init__(self) -> None:
        self.messages: list = []

    def tell(self, message) -> None:
        self.messages.append(message)


@pytest.fixture(autouse=True)
def stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


def test_a_level_restarts_its_children_then_escalates_to_its_parent_and_counts_every_restart():
    restarted, parent, metrics = [], Recorder(), Metrics()
    level = Supervisor.start("pods", restart={"pod": restarted.append}, intensity=Intensity(2, 60.0),
                             parent=parent, metrics=metrics)
    for uid in ("u1", "u2", "u3", "u4"):
        level.tell(ChildFailed("pod", uid, "RuntimeError('boom')", name=f"default/{uid}"))
    wait_for(lambda: parent.messages, what="the escalation")
    assert restarted == ["u1", "u2"]
    (escalated,) = parent.messages
    assert (escalated.kind, escalated.key, escalated.name) == ("pods", "pods", "level")
    assert "pod default/u3 crashed" in escalated.error
    assert metrics.registry.get_sample_value("kvc_actor_restarts_total", {"kind": "pod"}) == 3  # u4: given up


def test_the_root_gives_up_by_calling_exhausted():
    exhausted = threading.Event()
    root = Supervisor.start("root", restart={"watcher": lambda key: None}, intensity=Intensity(0, 5.0),
                            exhausted=exhausted.set)
    root.tell(ChildFailed("watcher", "pods", "boom"))
    wait_for(exhausted.is_set, what="the root gave up")


def test_child_failed_carries_the_traceback():
    try:
        raise KeyError("x")
    except KeyError as error:
        message = child_failed("pod", "u1", error, error.__traceback__, "default/a")
    assert message.error == "KeyError('x')" and message.name == "default/a"
    assert message.trace.startswith("Traceback (most recent call last)") and "KeyError: 'x'" in message.trace
