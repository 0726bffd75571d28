"""Actors with a fake executor that keeps an in-memory fdb: coalescing, gating, supervision.

The fake implements the executor's interface (`run(namespace, pod, container, argv, stdin=)`) and
understands exactly the commands the agent module builds; what crosses the kernel boundary for real is
tested end to end on the sandbox (tests/e2e).
"""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.actors.network import NetworkActor
from kube_vxlan_controller.actors.pod import PodActor
from kube_vxlan_controller.actors.registry import Registry
from kube_vxlan_controller.actors.scheduler import Scheduler
from kube_vxlan_controller.messages import (ChildFailed, Member, PeersChanged, PodRemoved, PodUpdate, Snapshot,
                                            Synced)
from kube_vxlan_controller.model import Condition, ExecResult, Pod
from kube_vxlan_controller.options import resolve
from kube_vxlan_controller.settings import Settings
from polling import wait_for


class FakePodExecutor:
    """One pod's agent: an fdb per device; `gate` (when set) holds every exec until released."""

    def __init__(self) -> None:
        self.fdb: dict[str, set[str]] = {}
        #: the pod's VXLAN links (a pod set up before this actor saw it has vxeth0)
        self.links: set[str] = {"vxeth0"}
        self.calls: list[list[str]] = []
        self.releases = 0
        self.gate: threading.Event | None = None
        #: fdb batches fail (exit 255)
        self.fail = False

    def run(self, namespace, pod, container, argv, *, stdin=None, deadline=None, suspect=False, ok=frozenset({0})):
        self.calls.append(list(argv))
        if self.gate is not None:
            self.gate.wait(5)
        if argv == agent.LINKS_ARGV:
            return ExecResult(0, self._links())
        if argv == agent.STATE_ARGV:
            mark = "\n--kvc--\n"
            return ExecResult(0, mark.join([self._links(), "[]", "[]", self._fdb()]))
        if argv[:2] == ["sh", "-c"] and "<<'KVC'" in argv[2]:  # links and fdb converged in one exec
            for line in argv[2].split("<<'KVC'\n", 1)[1].split("KVC\n", 1)[0].splitlines():
                if line.startswith("link del"):
                    self.links.discard(line.split()[3])
                    self.fdb.pop(line.split()[3], None)
                elif line.startswith("link add"):
                    self.links.add(line.split()[3])
            return self._bridge(stdin)
        if argv[:2] == ["sh", "-c"] and "ip -force -batch -" in argv[2]:  # setup and release
            if any(f"ip link show dev {dev} " in argv[2] for dev in self.links):
                return ExecResult(agent.LINKS_EXIST)
            self.links |= {line.split()[3] for line in stdin.splitlines() if line.startswith("link add")}
            self.releases += 1
            return ExecResult(137)
        if "kill -TERM 1" in " ".join(argv):
            self.releases += 1
        if argv[-3:] == ["-force", "-batch", "-"] and "bridge" in argv:
            return self._bridge(stdin)
        return ExecResult(0)

    def _links(self) -> str:
        return json.dumps([{"ifindex": 5, "ifname": dev, "flags": ["UP"], "mtu": 1450, "ifalias": f"kvc:{dev}",
                            "linkinfo": {"info_kind": "vxlan",
                                         "info_data": {"id": 100, "link": "eth0", "port": 8472, "learning": False}}}
                           for dev in sorted(self.links)])

    def _fdb(self) -> str:
        return json.dumps([{"mac": agent.ZERO_MAC, "ifname": dev, "dst": ip, "flags": ["self"], "state": "permanent"}
                           for dev, ips in self.fdb.items() for ip in sorted(ips)])

    def _bridge(self, stdin: str) -> ExecResult:
        if self.fail:
            return ExecResult(255, stderr="Cannot find device")
        for line in stdin.splitlines():
            words = line.split()
            dev, ip = words[words.index("dev") + 1], words[words.index("dst") + 1]
            (self.fdb.setdefault(dev, set()).add if words[1] == "append" else self.fdb[dev].discard)(ip)
        return ExecResult(0)


SPEC = resolve("vxeth0", {"vxeth0": "id=100 up"}, pod_key="default/p").networks


@pytest.fixture
def scheduler():
    s = Scheduler().start()
    yield s
    s.stop()


def running_pod(uid="u1", ip="10.0.0.1") -> Pod:
    return Pod(uid=uid, namespace="default", name=f"p-{uid}", ip=ip, agent_running=True, phase="Running")


def snapshot(*ips: str) -> Snapshot:
    members = tuple(Member(f"peer{i}", f"default/peer{i}", ip, "vxeth0") for i, ip in enumerate(ips))
    return Snapshot("vxeth0", members + (Member("u1", "default/p-u1", "10.0.0.1", "vxeth0"),))


def releases(calls) -> int:
    """Execs that would release the init agent (the fake's own count says which did)."""
    return sum(1 for argv in calls if "kill -TERM 1" in " ".join(argv))


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


def test_scheduler_delivers_in_time_order(scheduler):
    got = []

    class Ref:
        def tell(self, message):
            got.append(message)

    scheduler.tell_later(0.2, Ref(), "late")
    scheduler.tell_later(0.0, Ref(), "now")
    wait_for(lambda: len(got) == 2, what="two deliveries")
    assert got == ["now", "late"]


class FakeStream:
    """A stream whose `run` hands over the given events, then waits for stop."""

    def __init__(self, events, on_event, wait: threading.Event | None = None):
        self.events, self.on_event, self.wait = events, on_event, wait
        self.delivered = threading.Event()

    def run(self, stop):
        if self.wait is not None:
            self.wait.wait(5)
        for event in self.events:
            self.on_event(event)
        self.delivered.set()
        stop.wait()

    def stop(self):
        pass


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


class Recorder:
    def __init__(self):
        self.messages = []

    def tell(self, message):
        self.messages.append(message)

    def is_alive(self):
        return True


def network_registry(pods: dict):
    """A registry with real network actors and recording pod actors."""
    registry = Registry(pod_factory=lambda uid, key: pods.setdefault(uid, Recorder()),
                        network_factory=lambda name, synced: NetworkActor.start(name, registry=registry, synced=synced))
    return registry


def member_ips(registry, network="vxeth0") -> set[str]:
    ref = registry.networks().get(network)
    return {m.ip for m in ref.proxy().current().get(timeout=5).members} if ref else set()


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
                             events=lambda pod, reason, message: events.append((reason, message)))
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
