"""PodActor with a fake executor that keeps an in-memory fdb (tests/actorfakes.py): coalescing, exec
counts, setup and release, failures and the Wired condition as the actor runs them."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from actorfakes import SPEC, FakePodExecutor, releases, running_pod, snapshot
from polling import wait_for

from kube_vxlan_controller import agent
from kube_vxlan_controller.actors.pod import PodActor
from kube_vxlan_controller.messages import Member, PeersChanged, PodUpdate, Snapshot
from kube_vxlan_controller.model import Condition, ExecResult, Pod
from kube_vxlan_controller.settings import Settings


def test_pod_actor_converges_fdb_to_the_latest_snapshot(scheduler):
    fake = FakePodExecutor()
    fake.fdb["vxeth0"] = {"10.9.9.9"}  # stale entry from a pod long gone
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler)
    ref.tell(PodUpdate(running_pod(), SPEC))
    ref.tell(PeersChanged(snapshot("10.0.0.2", "10.0.0.3")))
    wait_for(lambda: fake.fdb.get("vxeth0") == {"10.0.0.2", "10.0.0.3"}, what="fdb == peers")


def test_requests_arriving_during_a_slow_exec_coalesce_into_one_reconcile(scheduler):
    fake = FakePodExecutor()
    fake.gate = threading.Event()
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler)
    ref.tell(PodUpdate(running_pod(), SPEC))
    ref.tell(PeersChanged(snapshot("10.0.0.2")))
    wait_for(lambda: fake.calls, what="the first exec to start")
    peers = [f"10.0.1.{i}" for i in range(1, 41)]
    for n in range(1, 41):  # 40 changes while the first exec is stuck
        ref.tell(PeersChanged(snapshot(*peers[:n])))
    fake.gate.set()
    wait_for(lambda: fake.fdb.get("vxeth0") == set(peers), what="fdb == the last snapshot")
    # one read (links and fdb) + write for the first snapshot, then one write for the 40 that piled up.
    assert len(fake.calls) == 3, fake.calls


def test_a_join_costs_the_newcomer_two_execs_and_each_member_one(scheduler):
    newcomer, member = FakePodExecutor(), FakePodExecutor()
    newcomer.links = set()
    settings = Settings(resync=600)
    new = PodActor.start("u1", "default/p-u1", executor=newcomer, settings=settings, scheduler=scheduler)
    old = PodActor.start("u2", "default/p-u2", executor=member, settings=settings, scheduler=scheduler)
    # The member was wired long ago: its fdb and links are known.
    old.tell(PodUpdate(running_pod("u2", "10.0.0.2"), SPEC))
    old.tell(PeersChanged(Snapshot("vxeth0", (Member("u2", "default/p-u2", "10.0.0.2", "vxeth0"),))))
    wait_for(lambda: member.calls, what="the member's first sync")
    old.ask(PodUpdate(running_pod("u2", "10.0.0.2"), SPEC))
    member.calls.clear()
    init = Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1", init_agent_running=True,
               init_agent_id="c1")
    new.tell(PodUpdate(init, SPEC))
    wait_for(lambda: releases(newcomer.calls) == 1, what="the newcomer set up and released")
    new.tell(PodUpdate(running_pod(), SPEC))
    both = Snapshot("vxeth0", (Member("u1", "default/p-u1", "10.0.0.1", "vxeth0"),
                               Member("u2", "default/p-u2", "10.0.0.2", "vxeth0")))
    new.tell(PeersChanged(both))
    old.tell(PeersChanged(both))
    wait_for(lambda: newcomer.fdb.get("vxeth0") == {"10.0.0.2"} and member.fdb.get("vxeth0") == {"10.0.0.1"},
             what="both wired")
    new.ask(PodUpdate(running_pod(), SPEC))
    old.ask(PodUpdate(running_pod("u2", "10.0.0.2"), SPEC))
    assert len(newcomer.calls) == 2 and releases(newcomer.calls) == 1, newcomer.calls  # setup+release, batch
    assert len(member.calls) == 1, member.calls  # one batch, no read


def test_pod_actor_waits_for_a_snapshot_before_touching_the_fdb(scheduler):
    fake = FakePodExecutor()
    fake.fdb["vxeth0"] = {"10.0.0.2"}
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler)
    ref.tell(PodUpdate(running_pod(), SPEC))
    ref.ask(PodUpdate(running_pod(), SPEC))  # the mailbox is processed in order: both are handled
    assert fake.calls == [] and fake.fdb["vxeth0"] == {"10.0.0.2"}


def test_pod_whose_sandbox_is_recreated_is_set_up_again(scheduler):
    """Same UID, new init agent instance (node reboot): setup and release run again."""
    fake = FakePodExecutor()
    fake.links = set()
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600, terminate_file=""),
                         scheduler=scheduler)
    first = Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1", init_agent_running=True,
                init_agent_id="containerd://aaa")
    ref.tell(PodUpdate(first, SPEC))
    ref.ask(PodUpdate(first, SPEC))  # the same instance again: no second setup
    wait_for(lambda: fake.releases == 1, what="first release")
    ref.tell(PodUpdate(Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1", init_agent_running=True,
                           init_agent_id="containerd://bbb"), SPEC))
    wait_for(lambda: fake.releases == 2, what="second release")
    assert fake.calls.count(agent.LINKS_ARGV) == 1  # the second time the links exist: read before setup


@pytest.mark.parametrize("outcome, released", [(0, True), (137, True), (1, False), ("gone", True)])
def test_release_counts_0_137_and_a_gone_container_as_released(scheduler, outcome, released):
    from kube_vxlan_controller.k8s.errors import PodGone as Gone

    class Releasing(FakePodExecutor):
        def run(self, namespace, pod, container, argv, *, stdin=None, deadline=None, suspect=False, ok=frozenset({0})):
            if "kill -TERM 1" in " ".join(argv):
                self.calls.append(list(argv))
                if outcome == "gone":
                    raise Gone("container not running")
                return ExecResult(outcome)
            return super().run(namespace, pod, container, argv, stdin=stdin)

    fake = Releasing()
    fake.links = set()
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler)
    ref.tell(PodUpdate(Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1", init_agent_running=True,
                           init_agent_id="c1"), SPEC))
    wait_for(lambda: releases(fake.calls), what="a release")
    state = ref.proxy().state().get(timeout=5)
    assert (state.status == "set up") == released, state


@pytest.mark.parametrize("phase", ["fdb sync", "setup"])
def test_a_forbidden_exec_is_said_once_and_converges_once_the_role_is_restored(scheduler, phase):
    from loguru import logger

    from kube_vxlan_controller.backoff import Backoff
    from kube_vxlan_controller.k8s.errors import Forbidden

    denial = ('pods "p-u1" is forbidden: User "system:serviceaccount:kube-system:kvc" cannot create resource '
              '"pods/exec" in API group "" in the namespace "default"')

    class Denying(FakePodExecutor):
        allowed = threading.Event()

        def run(self, *args, **kwargs):
            if not self.allowed.is_set():
                self.calls.append(["denied"])
                raise Forbidden(f"403 {denial}", status=403)
            return super().run(*args, **kwargs)

    fake, events, lines = Denying(), [], []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600),
                             scheduler=scheduler, backoff=Backoff(initial=0.01, cap=0.02),
                             events=lambda pod, reason, message, type="Warning": events.append((reason, message)))
        if phase == "setup":  # each retry enters "setting up" before its exec is denied again
            fake.links = set()
            ref.tell(PodUpdate(Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1",
                                   init_agent_running=True, init_agent_id="c1"), SPEC))
        else:
            ref.tell(PodUpdate(running_pod(), SPEC))
            ref.tell(PeersChanged(snapshot("10.0.0.2")))
        wait_for(lambda: fake.calls.count(["denied"]) >= 5, what="several denied retries")
        assert [reason for reason, _ in events] == ["VxlanForbidden"]
        assert 'cannot create resource "pods/exec"' in events[0][1]
        said = [line for line in lines if "lacks a permission" in line]
        assert len(said) == 1 and "default/p-u1" in said[0] and "pods/exec" in said[0], lines
        assert not [line for line in lines if "retrying in" in line]
        fake.allowed.set()
        if phase == "setup":
            wait_for(lambda: releases(fake.calls) == 1, what="set up and released once allowed")
            wait_for(lambda: ref.proxy().state().get(timeout=5).status == "set up", what="set up")
        else:
            wait_for(lambda: fake.fdb.get("vxeth0") == {"10.0.0.2"}, what="fdb == peers once allowed")
    finally:
        logger.remove(sink)


def test_the_wired_condition_is_handed_over_only_when_it_changes(scheduler):
    fake, written = FakePodExecutor(), []
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler,
                         conditions=lambda pod, condition, transition: written.append((condition, transition)))
    # a restarted controller: the pod was wired before, and the API holds that
    before = Condition(True, "Wired", "vxeth0 1/1 peers")
    fake.fdb["vxeth0"] = {"10.0.0.2"}
    ref.tell(PodUpdate(dataclasses.replace(running_pod(), wired=before), SPEC))
    ref.tell(PeersChanged(snapshot("10.0.0.2")))
    wait_for(lambda: fake.calls.count(agent.STATE_ARGV) == 1, what="the fdb read")
    ref.tell(PeersChanged(snapshot("10.0.0.2", "10.0.0.3")))
    wait_for(lambda: fake.fdb["vxeth0"] == {"10.0.0.2", "10.0.0.3"} and written, what="the changed condition")
    assert written == [(Condition(True, "Wired", "vxeth0 2/2 peers"), False)], "unchanged: not written; then once"


def test_a_failing_sync_makes_the_pod_unwired_at_once(scheduler):
    fake, written = FakePodExecutor(), []
    fake.links = set()
    ref = PodActor.start("u1", "default/p-u1", executor=fake, settings=Settings(resync=600), scheduler=scheduler,
                         conditions=lambda pod, condition, transition: written.append((condition, transition)))
    ref.tell(PodUpdate(Pod(uid="u1", namespace="default", name="p-u1", ip="10.0.0.1", init_agent_running=True,
                           init_agent_id="i1"), SPEC))
    wait_for(lambda: fake.releases == 1, what="setup and release")
    ref.tell(PodUpdate(running_pod(), SPEC))
    ref.tell(PeersChanged(snapshot("10.0.0.2")))
    wait_for(lambda: written and written[-1][0].status, what="wired")
    # not written while setting up: a pod with no condition yet is held unready by its gate all the same
    assert [(c.reason, t) for c, t in written] == [("Wired", True)]
    fake.fail = True
    ref.tell(PeersChanged(snapshot("10.0.0.2", "10.0.0.3")))
    wait_for(lambda: written[-1][0].reason == "Failing", what="failing")
    assert written[-1] == (Condition(False, "Failing", written[-1][0].message), True)
    assert written[-1][0].message.startswith("vxeth0 ?/2 peers: container vxlan-controller-agent: ")
