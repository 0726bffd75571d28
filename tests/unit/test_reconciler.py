"""PodReconciler without threads, executors or clocks: what it decides next for what it was told, and
what the outcomes of the execs it asked for make of the pod's state and its Wired condition."""

from __future__ import annotations

import dataclasses

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.eligibility import Cause
from kube_vxlan_controller.messages import Member, Snapshot
from kube_vxlan_controller.model import Condition, Pod
from kube_vxlan_controller.options import resolve
from kube_vxlan_controller.reconciler import (SETUP_ATTEMPTS, After, Converge, NoExec, Owed, PodReconciler, Setup,
                                              Status)
from kube_vxlan_controller.settings import Settings

SPEC = resolve("vxeth0", {"vxeth0": "id=100 up"}, pod_key="default/p").networks
#: the interface as its spec asks, as a setup or a sync leaves it
LINKS = agent.plan_links(SPEC, {}, pod_ips=("10.0.0.1",)).after
UNCHANGED = agent.LinkPlan("")
SETTINGS = Settings(coalesce=0.5, coalesce_max=2.0)


def reconciler(**kwargs) -> PodReconciler:
    backoff = Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.0, clock=lambda: 0.0)
    return PodReconciler("u1", "default/p", settings=SETTINGS, backoff=backoff, **kwargs)


NAMED = {"vxlan.openvnf.org/networks": "vxeth0"}


def init_pod(instance="c1") -> Pod:
    return Pod(uid="u1", namespace="default", name="p", ip="10.0.0.1", annotations=NAMED, init_agent_running=True,
               init_agent_id=instance)


def running_pod(**kwargs) -> Pod:
    return Pod(uid="u1", namespace="default", name="p", ip="10.0.0.1", annotations=NAMED, agent_running=True,
               **kwargs)


def snapshot(*ips: str) -> Snapshot:
    others = tuple(Member(f"u{ip}", f"default/{ip}", ip, "vxeth0") for ip in ips)
    return Snapshot("vxeth0", others + (Member("u1", "default/p", "10.0.0.1", "vxeth0"),))


def synced(peers: frozenset[str]) -> agent.State:
    return agent.State(LINKS, {"vxeth0": peers})


def wired_pod(r: PodReconciler, now: float = 0.0, *peers: str) -> None:
    """A pod set up and released by `r`, its sidecar running, synced once to `peers`."""
    r.updated(init_pod(), SPEC, ())
    assert isinstance(r.next(now), Setup)
    r.set_up(frozenset({"vxeth0"}), agent.State(LINKS, {"vxeth0": frozenset()}))
    r.succeeded(1)
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot(*peers))
    action = r.next(now)
    assert isinstance(action, Converge) and action.kernel is not None
    r.converged(synced(frozenset(peers)), UNCHANGED)
    r.succeeded(1)


def test_a_new_pod_is_set_up_released_then_synced_and_the_states_say_so():
    r = reconciler()
    assert r.status is Status.WAITING and r.next(0.0) is None  # nothing known: nothing to do
    r.updated(init_pod(), SPEC, ())
    assert r.owed == Owed.SETUP
    action = r.next(0.0)
    assert action == Setup(SPEC, last_attempt=False) and r.state().status == "setting up"
    r.set_up(frozenset({"vxeth0"}), agent.State(LINKS, {"vxeth0": frozenset()}))
    assert r.next(0.0) is None and r.state().status == "set up"  # the sidecar does not run yet
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    action = r.next(0.0)
    # the setup wrote the pod's state: no read before the sync
    assert action == Converge(SPEC, {"vxeth0": frozenset({"10.0.0.2"})}, agent.State(LINKS, {"vxeth0": frozenset()}),
                              ("vxeth0",))
    r.converged(synced(frozenset({"10.0.0.2"})), UNCHANGED)
    assert r.state().status == "synced" and r.owed == Owed.NOTHING and r.next(10.0) is None


def test_a_pod_set_up_before_it_was_seen_is_read_then_synced():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    assert r.next(0.0) is None  # no network has said who the peers are
    r.peers_changed(snapshot("10.0.0.2"))
    action = r.next(0.0)
    assert isinstance(action, Converge) and action.kernel is None  # the kernel state is read first
    r.converged(synced(frozenset({"10.0.0.2"})), UNCHANGED)
    assert r.status is Status.SYNCED and r.managed == {"vxeth0"}


def test_the_same_init_agent_instance_is_set_up_once_a_new_one_again():
    r = reconciler()
    r.updated(init_pod("c1"), SPEC, ())
    assert isinstance(r.next(0.0), Setup)
    r.set_up(frozenset({"vxeth0"}), None)
    r.updated(init_pod("c1"), SPEC, ())
    assert r.next(0.0) is None
    r.updated(init_pod("c2"), SPEC, ())  # the pod's sandbox was re-created: its init containers run again
    assert isinstance(r.next(0.0), Setup) and r.status is Status.SETTING_UP


def test_a_burst_of_changes_during_an_exec_is_one_converge_to_the_latest_peers():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    assert isinstance(r.next(0.0), Converge)
    for n in range(3, 43):  # 40 changes while the exec runs
        r.peers_changed(snapshot(*(f"10.0.0.{i}" for i in range(2, n))))
    r.converged(synced(frozenset({"10.0.0.2"})), UNCHANGED)
    assert r.next(0.1) == After(pytest.approx(0.4))  # the window (0.5 s) is not over
    action = r.next(0.5)
    assert isinstance(action, Converge) and action.peers["vxeth0"] == {f"10.0.0.{i}" for i in range(2, 42)}
    r.converged(synced(action.peers["vxeth0"]), UNCHANGED)
    assert r.next(0.6) is None  # all of the burst was in that one


def _syncs_under_changes(r, now: float, tooks: list[float]) -> tuple[float, list[float]]:
    """A change whenever the window allows, each sync taking the next of `tooks`: the waits seen."""
    waits = []
    for n, took in enumerate(tooks):
        r.peers_changed(snapshot(f"10.0.1.{n}"))
        action = r.next(now)
        if isinstance(action, After):
            waits.append(action.delay)
            now += action.delay
            action = r.next(now)
        assert isinstance(action, Converge)
        r.converged(synced(action.peers["vxeth0"]), UNCHANGED, took=took)
    return now, waits


def test_under_steady_changes_the_window_follows_what_syncs_take_and_starts_over_after_a_quiet_spell():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    now, waits = _syncs_under_changes(r, 0.0, [0.01] * 4)
    assert waits == [0.5, 0.5, 0.5]  # quick syncs: the window stays at --coalesce
    now, waits = _syncs_under_changes(r, now, [0.4] * 5)
    # slow ones: SYNC_SPACING (4) × 0.4 s, reached by doubling (the first wait was set by the last quick sync)
    assert waits == pytest.approx([0.5, 1.0, 1.6, 1.6, 1.6])
    now, waits = _syncs_under_changes(r, now, [0.6] * 3)
    assert waits == pytest.approx([1.6, 2.0, 2.0])  # 4 × 0.6 s is more than --coalesce-max
    now, waits = _syncs_under_changes(r, now, [0.01] * 3)
    assert waits == pytest.approx([2.0, 0.5, 0.5])  # quick again: back to --coalesce at once
    r.peers_changed(snapshot("10.0.2.1"))
    assert isinstance(r.next(now + 60), Converge) and r.window == 0.5  # quiet for a minute: at once, 0.5 again


def test_a_failed_sync_is_retried_after_the_backoff_rereading_the_pod_and_recovers():
    r = reconciler()
    wired_pod(r, 0.0, "10.0.0.2")
    r.peers_changed(snapshot("10.0.0.2", "10.0.0.3"))
    assert isinstance(r.next(5.0), Converge)
    retry, events = r.failed(Status.FAILING, RuntimeError("exit 255"), 5.0)
    assert retry == After(1.0) and events == [] and r.state().status == "failing" and r.kernel is None
    r.peers_changed(snapshot("10.0.0.2", "10.0.0.3", "10.0.0.4"))
    assert r.next(5.5) == After(0.5)  # no exec before the backoff is over, whatever arrives
    action = r.next(6.0)
    assert isinstance(action, Converge) and action.kernel is None and len(action.peers["vxeth0"]) == 3
    retry, _ = r.failed(Status.HUNG, TimeoutError("deadline"), 6.0)
    assert retry == After(2.0) and r.suspect  # the next execs use the suspect slots
    action = r.next(8.0)
    r.converged(synced(action.peers["vxeth0"]), UNCHANGED)
    r.succeeded(1)
    assert r.status is Status.SYNCED and not r.suspect and r.backoff.attempts == 0


def test_resync_forgets_the_kernel_state_so_the_next_sync_reads_it():
    r = reconciler()
    wired_pod(r, 0.0, "10.0.0.2")
    r.resync()
    action = r.next(10.0)
    assert isinstance(action, Converge) and action.kernel is None and action.peers == {"vxeth0": {"10.0.0.2"}}


def test_setup_is_attempted_three_times_then_the_init_agent_is_released_anyway():
    r = reconciler()
    r.updated(init_pod(), SPEC, ())
    now = 0.0
    for attempt in range(1, SETUP_ATTEMPTS):
        assert r.next(now) == Setup(SPEC, last_attempt=False)
        retry, _ = r.failed(Status.FAILING, RuntimeError("RTNETLINK answers: Network is unreachable"), now)
        now += retry.delay
    assert r.next(now) == Setup(SPEC, last_attempt=True)
    events = r.set_up(None, None, gave_up=RuntimeError("RTNETLINK answers: Network is unreachable"))
    r.succeeded(2)
    assert [event.reason for event in events] == ["VxlanSetupFailed"]
    assert r.status is Status.SET_UP and r.setup_attempts == 0 and r.next(now) is None
    verdict = r.judge()
    assert verdict.write.reason == "SetupFailed" and not verdict.write.status


def test_an_rbac_denial_is_said_once_until_it_changes_or_an_exec_goes_through():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    said, now = [], 0.0
    for denial in ("cannot create pods/exec", "cannot create pods/exec", "cannot get pods"):
        r.next(now)
        retry, events = r.failed(Status.FORBIDDEN, RuntimeError(denial), now)
        said += [event.reason for event in events]
        now += retry.delay
    assert said == ["VxlanForbidden", "VxlanForbidden"] and r.state().status == "forbidden"
    r.converged(synced(frozenset()), UNCHANGED)  # allowed again
    r.succeeded(1)
    r.peers_changed(snapshot("10.0.0.3"))
    r.next(now + 60)
    _, events = r.failed(Status.FORBIDDEN, RuntimeError("cannot get pods"), now + 60)
    assert [event.reason for event in events] == ["VxlanForbidden"]  # news again after a success


def test_a_sync_owed_with_no_members_known_needs_no_exec_and_ends_a_failure():
    r = reconciler()
    r.updated(init_pod(), SPEC, ())
    r.next(0.0)
    retry, _ = r.failed(Status.FAILING, RuntimeError("exit 1"), 0.0)
    r.updated(running_pod(), SPEC, ())  # someone else released the init agent: no setup owed any more
    assert isinstance(r.next(retry.delay), NoExec)
    r.succeeded(0)
    assert r.status is Status.WAITING and r.owed == Owed.NOTHING


def test_an_update_of_a_deleting_pod_asks_for_nothing():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    r.updated(running_pod(deleting=True), SPEC, ())
    assert r.next(0.0) is None and r.judge() is None


def test_a_gone_pod_waits_for_the_next_event_and_is_not_judged():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    r.next(0.0)
    r.gone(RuntimeError("container not running"))
    assert r.state().status == "gone" and r.next(100.0) is None and r.judge() is None


def test_a_status_may_only_follow_one_its_transitions_allow():
    r = reconciler()
    r.updated(init_pod(), SPEC, ())
    r.next(0.0)  # setting up
    with pytest.raises(RuntimeError, match="setting up → synced is not a transition"):
        r.converged(synced(frozenset()), UNCHANGED)


def test_the_condition_is_written_only_when_it_differs_from_what_the_api_holds():
    r = reconciler()
    held = Condition(True, "Wired", "vxeth0 1/1 peers")
    r.updated(running_pod(wired=held), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    r.next(0.0)
    r.converged(synced(frozenset({"10.0.0.2"})), UNCHANGED)
    assert r.judge().write is None  # what a restarted controller finds: rewritten only if it changed
    r.peers_changed(snapshot("10.0.0.2", "10.0.0.3"))
    action = r.next(1.0)
    r.converged(synced(action.peers["vxeth0"]), UNCHANGED)
    verdict = r.judge()
    assert (verdict.write, verdict.transition) == (Condition(True, "Wired", "vxeth0 2/2 peers"), False)
    r.peers_changed(snapshot("10.0.0.2"))
    r.next(2.0)
    r.failed(Status.HUNG, TimeoutError("deadline"), 2.0)
    verdict = r.judge()
    assert verdict.write.reason == "Hung" and verdict.write.message == "vxeth0 ?/1 peers: deadline"
    assert verdict.transition


def test_a_new_pods_first_condition_is_not_setting_up():
    """A missing condition holds a readiness gate closed as well as SettingUp would."""
    r = reconciler()
    assert r.updated(init_pod(), SPEC, ()).write is None
    r.next(0.0)
    r.set_up(frozenset({"vxeth0"}), agent.State(LINKS, {"vxeth0": frozenset()}))
    assert r.judge().write is None


def test_an_interface_that_differs_from_its_spec_is_judged_so_and_counted():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot())
    r.next(0.0)
    other = {"vxeth0": dataclasses.replace(LINKS["vxeth0"], vni=200)}
    r.converged(agent.State(other, {"vxeth0": frozenset()}), UNCHANGED)
    verdict = r.judge()
    assert verdict.differs == {"vxeth0": ("id 200 → 100",)}
    assert verdict.write.reason == "InterfaceDiffers" and "vxeth0: id 200 → 100" in verdict.write.message


def test_interface_changes_are_events_naming_old_and_new():
    r = reconciler()
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot())
    action = r.next(0.0)
    old = {"vxeth0": dataclasses.replace(LINKS["vxeth0"], vni=200), "vxold": agent.Link("vxold", kind="vxlan")}
    plan = agent.plan_links(SPEC, old, pod_ips=("10.0.0.1",), remove=("vxold",))
    events = r.converged(synced(frozenset()), plan)
    assert [(e.reason, e.type) for e in events] == [("VxlanInterfaceChanged", "Normal")] * 2
    assert events[0].message == ("network vxeth0: interface vxeth0 id 200 → 100 (link replaced, its addresses, "
                                 "routes and fdb entries put back)")
    assert events[1].message == "interface vxold removed: the pod no longer names its network"
    assert action.named == ("vxeth0",)


def test_passes_count_whole_passes_for_readiness():
    r = reconciler()
    r.updated(running_pod(), (), ())  # names no network: a pass at once
    assert r.passes == 1
    r.updated(running_pod(), SPEC, ())
    r.peers_changed(snapshot("10.0.0.2"))
    r.next(0.0)
    r.converged(synced(frozenset({"10.0.0.2"})), UNCHANGED)
    assert r.passes == 2 and r.state().passes == 2


def test_a_cause_that_blocks_wiring_is_the_condition_and_one_that_does_not_is_not():
    r = reconciler()
    warning = Cause("SidecarLacksNetAdmin", "the sidecar has no NET_ADMIN", blocks=False)
    blocking = Cause("NetworksAnnotationMissing", "no annotation vxlan.openvnf.org/networks")
    verdict = r.updated(running_pod(), (), (), (warning, blocking))
    assert (verdict.write.status, verdict.write.reason) == (False, "NetworksAnnotationMissing")
    assert r.updated(running_pod(), (), (), (warning, blocking)) is None  # the same reasons: judged at the next pass
    other = Cause("NoValidNetwork", "the annotation resolves to no valid network")
    assert r.updated(running_pod(), (), (), (warning, other)).write.reason == "NoValidNetwork"  # judged at once
    # the annotation is back, the warning stays: nothing known of the pod until its first sync reads it
    assert r.updated(running_pod(), SPEC, (), (warning,)) is None
    r.peers_changed(snapshot("10.0.0.2"))
    action = r.next(0.0)
    r.converged(synced(action.peers["vxeth0"]), UNCHANGED)
    verdict = r.judge()
    assert (verdict.write.status, verdict.write.reason) == (True, "Wired") and verdict.transition


def test_a_pod_that_drops_its_last_network_converges_to_none_so_its_interface_goes():
    r = reconciler()
    wired_pod(r, 0.0, "10.0.0.2")
    r.updated(dataclasses.replace(running_pod(), annotations={}), (), ())
    action = r.next(10.0)
    assert isinstance(action, Converge) and action.networks == () and action.peers == {} and action.named == ()
    removed = agent.LinkPlan("link del dev vxeth0\n", removed=("vxeth0",))
    events = r.converged(agent.State({}, {}), removed)
    assert [e.message for e in events] == ["interface vxeth0 removed: the pod no longer names its network"]
