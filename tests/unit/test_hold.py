"""The hold that lets a burst cost each member one fdb sync (hold.py), and a network actor using it."""

from __future__ import annotations

import collections

import pytest

from kube_vxlan_controller.hold import Hold, longest_for, worth_holding
from kube_vxlan_controller.actors.network import NetworkActor
from kube_vxlan_controller.runtime.registry import Registry
from kube_vxlan_controller.runtime.scheduler import Scheduler
from kube_vxlan_controller.messages import HoldCheck, PeersChanged, PodUpdate, Synced
from kube_vxlan_controller.model import Pod
from kube_vxlan_controller.options import resolve
from polling import wait_for

SPEC = resolve("vxeth0", {"vxeth0": "id=100 up"}, pod_key="default/p").networks


def test_a_hold_awaits_the_pods_on_their_way_when_it_began_not_later_ones():
    hold = Hold.begin({"a", "b"}, now=10.0, longest=10)
    hold.arrived("c", 11.0)  # not awaited: no progress
    assert hold.progress == 10.0 and not hold.over(11.0, stall=2)
    hold.arrived("a", 11.5)
    assert hold.progress == 11.5 and hold.check_at(stall=2) == 13.5
    hold.arrived("b", 12.0)
    assert hold.over(12.0, stall=2)


def test_a_hold_ends_when_its_pods_stall_or_it_lasted_too_long():
    hold = Hold.begin({"a", "b", "stuck"}, now=0.0, longest=10)
    assert not hold.over(1.9, stall=2)
    assert hold.over(2.0, stall=2)  # nobody arrived for `stall`
    for t in range(1, 10):
        hold.arrived("a" if t % 2 else "b", float(t))  # only the first arrival of each counts
    assert hold.progress == 2.0 and hold.check_at(stall=2) == 4.0
    hold = Hold.begin({f"p{i}" for i in range(20)}, now=0.0, longest=10)
    for i in range(19):
        hold.arrived(f"p{i}", 0.5 * (i + 1))
    assert hold.check_at(stall=2) == 10.0
    assert not hold.over(9.9, stall=2) and hold.over(10.0, stall=2)


def test_a_slow_roll_out_may_pause_for_a_quarter_of_its_hold_before_it_counts_as_stalled():
    hold = Hold.begin({"a", "b"}, now=0.0, longest=600)
    hold.arrived("a", 40.0)
    assert hold.stalled_at(2) == pytest.approx(40 / 0.75)  # 13.3 s without an arrival, a quarter of 53.3 s
    assert not hold.over(53.0, stall=2) and hold.over(53.4, stall=2)


def test_holds_of_one_growth_last_as_long_as_it_has_lasted():
    assert [longest_for(10, growing) for growing in (0, 5, 10, 20, 40, 80)] == [10, 10, 10, 20, 40, 80]


def test_only_a_network_growing_by_a_quarter_or_more_is_worth_holding():
    assert worth_holding(197, 1) and worth_holding(50, 200) and worth_holding(1, 2)
    assert not worth_holding(20, 200) and not worth_holding(5, 0) and not worth_holding(0, 3)


class Recorder:
    def __init__(self) -> None:
        self.messages: list = []

    def tell(self, message) -> None:
        self.messages.append(message)

    def is_alive(self) -> bool:
        return True


def pod(uid: str, *, member: bool) -> Pod:
    return Pod(uid=uid, namespace="default", name=uid, ip=f"10.0.0.{int(uid[1:]) + 1}", agent_running=member,
               phase="Running" if member else "Pending")


def sizes(recorder: Recorder) -> list[int]:
    return [len(m.snapshot.members) for m in recorder.messages if isinstance(m, PeersChanged)]


@pytest.fixture
def network():
    """start(**options) → (the network actor, uid → Recorder of what each pod actor was told)."""
    scheduler, pods, started = Scheduler().start(), collections.defaultdict(Recorder), []
    registry = Registry(pod_factory=None, network_factory=None)
    registry.existing_pod = lambda uid: pods[uid]

    def start(**options):
        started.append(NetworkActor.start("vxeth0", registry=registry, scheduler=scheduler, **options))
        return started[-1], pods

    yield start
    for net in started:
        net.stop()
    scheduler.stop()


def test_a_burst_is_told_to_earlier_members_once_the_pods_on_their_way_joined(network):
    net, pods = network(synced=True, hold=30, stall=30)
    for i in range(12):  # a Deployment of 12: all created, none running yet
        net.tell(PodUpdate(pod(f"p{i}", member=False), SPEC))
    for i in range(4):
        net.ask(PodUpdate(pod(f"p{i}", member=True), SPEC))
    # p0 was told before the hold began (nobody was told yet when it joined; p1's joining began it); from
    # then on nobody hears, newcomers included (their wait, up to `stall`, is longer than this test)
    assert {uid: sizes(pods[uid]) for uid in ("p0", "p1", "p2", "p3")} == {"p0": [1], "p1": [], "p2": [], "p3": []}
    net.tell(PodUpdate(Pod(uid="p11", namespace="default", name="p11", deleting=True), SPEC))  # one is deleted
    for i in range(4, 11):
        net.ask(PodUpdate(pod(f"p{i}", member=True), SPEC))
    # every awaited pod joined or went: everyone hears the whole membership, once
    wait_for(lambda: all(sizes(pods[f"p{i}"])[-1:] == [11] for i in range(11)), what="all told 11 members")
    assert sizes(pods["p0"]) == [1, 11] and sizes(pods["p1"]) == [11] and sizes(pods["p10"]) == [11]
    # a later change in the grown network is not worth holding: told at once
    net.ask(PodUpdate(pod("p12", member=False), SPEC))
    net.ask(PodUpdate(pod("p12", member=True), SPEC))
    wait_for(lambda: sizes(pods["p0"])[-1] == 12, what="p0 told of p12 at once")


def test_a_stalled_hold_ends_after_the_stall_and_tells_everyone(network):
    net, pods = network(synced=False, hold=30, stall=0.3)
    for i in range(2):
        net.tell(PodUpdate(pod(f"p{i}", member=True), SPEC))
    net.tell(PodUpdate(pod("p9", member=False), SPEC))  # on its way, never to arrive
    net.ask(Synced())
    assert sizes(pods["p0"]) == [2]
    net.ask(PodUpdate(pod("p2", member=True), SPEC))
    assert sizes(pods["p0"]) == [2] and sizes(pods["p2"]) == []  # held back from p0, and the newcomer waits
    wait_for(lambda: sizes(pods["p0"]) == [2, 3], what="the stalled hold released", timeout=5)
    assert sizes(pods["p2"]) in ([3], [3, 3])  # its wait ended with the hold's, or just before it


def test_the_next_hold_of_the_same_growth_lasts_as_long_as_the_growth_has(network):
    now = [0.0]
    net, pods = network(synced=True, hold=5, stall=600, clock=lambda: now[0])
    net.ask(PodUpdate(pod("p0", member=True), SPEC))
    for i in range(1, 4):
        net.ask(PodUpdate(pod(f"p{i}", member=False), SPEC))
    net.ask(PodUpdate(pod("p1", member=True), SPEC))
    assert net.proxy().hold.get().longest == 5  # the growth's first hold: `hold`
    now[0] = 1.0
    net.ask(PodUpdate(pod("p2", member=True), SPEC))
    net.ask(PodUpdate(pod("p3", member=True), SPEC))
    assert net.proxy().hold.get() is None and sizes(pods["p0"]) == [1, 4]  # all awaited joined
    for i in range(4, 10):
        net.ask(PodUpdate(pod(f"p{i}", member=False), SPEC))
    now[0] = 20.0
    net.ask(PodUpdate(pod("p4", member=True), SPEC))
    assert net.proxy().hold.get().longest == 20  # the same growth, 20 s old


def test_a_newcomer_waits_at_most_the_stall_of_its_own_then_hears_again_at_the_end(network):
    now = [0.0]
    net, pods = network(synced=True, hold=600, stall=5, clock=lambda: now[0])
    net.ask(PodUpdate(pod("p0", member=True), SPEC))
    for i in range(1, 6):
        net.ask(PodUpdate(pod(f"p{i}", member=False), SPEC))  # a burst on its way
    net.ask(PodUpdate(pod("p1", member=True), SPEC))  # the hold begins (p0 told before it)
    assert sizes(pods["p1"]) == []
    now[0] = 4.0
    net.ask(PodUpdate(pod("p2", member=True), SPEC))  # progress: the hold goes on
    net.ask(HoldCheck())
    assert sizes(pods["p1"]) == [] and sizes(pods["p2"]) == []  # 4 s < its stall
    now[0] = 5.0
    net.ask(HoldCheck())
    assert sizes(pods["p1"]) == [3] and sizes(pods["p2"]) == []  # p1 waited 5 s: told the membership now
    assert sizes(pods["p0"]) == [1]  # members told before the hold still wait for its end
    for i in range(3, 6):
        net.ask(PodUpdate(pod(f"p{i}", member=True), SPEC))
    wait_for(lambda: sizes(pods["p0"]) == [1, 6], what="the hold's end, to everyone")
    assert sizes(pods["p1"]) == [3, 6] and sizes(pods["p2"]) == [6] and sizes(pods["p5"]) == [6]
