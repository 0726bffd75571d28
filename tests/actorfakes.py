"""Fakes shared by the actor tests (tests/unit/test_pod_actor.py, test_network_actor.py, test_watcher.py):
a pod executor that keeps an in-memory fdb, recording actor refs, a registry of real network actors
over recording pod actors, and a pod stream that hands over given events.

The fake executor implements the executor's interface (`run(namespace, pod, container, argv, stdin=)`,
`open_session(…)`) and understands exactly the commands the agent module builds (a session request is
run as the one exec it stands for, `sidecar.exec_form`, and recorded in `calls` like an exec); what crosses the kernel boundary for real
is tested end to end on the sandbox (tests/e2e).
"""

from __future__ import annotations

import json
import threading

from kube_vxlan_controller import agent
from kube_vxlan_controller.actors.network import NetworkActor
from kube_vxlan_controller.k8s.sessions import SessionEnded
from kube_vxlan_controller.sidecar import exec_form
from kube_vxlan_controller.runtime.registry import Registry
from kube_vxlan_controller.messages import Member, Snapshot
from kube_vxlan_controller.model import ExecResult, Pod
from kube_vxlan_controller.options import resolve


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
        #: sessions opened (each one exec); `sessions_fail`: each ends before its first reply
        self.sessions_opened = 0
        self.sessions_fail = False
        self.deadline = 10.0

    def open_session(self, namespace, pod, container, argv, *, suspect=False):
        self.sessions_opened += 1
        session = FakeSession(self, namespace, pod, container)
        if len(argv) > 3:  # sh -c SCRIPT kvc ID BODY: the opening carries an fdb request
            session.carried = f"kvc {argv[4]} fdb\n{argv[5]}%\n"
        return session

    def run(self, namespace, pod, container, argv, *, stdin=None, deadline=None, suspect=False, ok=frozenset({0})):
        self.calls.append(list(argv))
        if self.gate is not None:
            self.gate.wait(5)
        if argv == agent.LINKS_ARGV:
            return ExecResult(0, self._links())
        if argv == agent.STATE_ARGV:
            mark = "\n--kvc--\n"
            return ExecResult(0, mark.join([self._links(), "[]", "[]", self._fdb()]))
        if argv[2:4] == ["sh", "-c"] and "<<'KVC'" in argv[4]:  # links and fdb converged in one exec
            for line in argv[4].split("<<'KVC'\n", 1)[1].split("KVC\n", 1)[0].splitlines():
                if line.startswith("link del"):
                    self.links.discard(line.split()[3])
                    self.fdb.pop(line.split()[3], None)
                elif line.startswith("link add"):
                    self.links.add(line.split()[3])
            return self._bridge(stdin)
        if argv[:2] == ["sh", "-c"] and "-batch -" in argv[2]:  # setup and release
            adds = [line.split()[3] for line in stdin.splitlines() if line.startswith("link add")]
            taken = [dev in self.links for dev in adds]
            if "ip -batch -" in argv[2] and any(taken):  # a fresh batch stops at the add of a taken name
                self.links |= set(adds[:taken.index(True)])
                return ExecResult(agent.LINKS_EXIST)
            self.links |= set(adds)
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


class FakeSession:
    """A session of the fake pod: each request runs as the exec it stands for; ends when told."""

    def __init__(self, executor: FakePodExecutor, namespace, pod, container) -> None:
        self.executor, self.namespace, self.pod, self.container = executor, namespace, pod, container
        self.replies = 0
        self.ended: str | None = None
        self.why = "open"
        #: the request its opening carried, run at its first ask
        self.carried = ""

    def ask(self, text, end, *, deadline):
        text, self.carried = text or self.carried, ""
        if self.ended is None and self.executor.sessions_fail:
            self.ended = self.why = "exited"
        if self.ended is not None:
            raise SessionEnded(f"fake session ended: {self.ended}", reason=self.ended, written=False)
        header, *lines = text.splitlines()
        _, ident, kind = header.split()
        bodies, body = [], []
        for line in lines:
            if line == "%":
                bodies.append("".join(f"{b}\n" for b in body))
                body = []
            elif kind == "fdb" or bodies:  # a packed fdb line: OP DEV IP [IP ...]
                op, dev, *ips = line.split()
                body += [f"fdb {op} {agent.ZERO_MAC} dev {dev} dst {ip}" for ip in ips]
            else:
                body.append(line)
        argv, stdin = exec_form(kind, tuple(bodies), 11)
        result = self.executor.run(self.namespace, self.pod, self.container, argv, stdin=stdin)
        self.replies += 1
        return f"{result.stdout}\n--kvc-err-- {ident}\n{result.stderr}\n--kvc-end-- {ident} {result.exit_code}\n"

    def close(self, reason="closed by us"):
        if self.ended is None:
            self.ended = self.why = reason


SPEC = resolve("vxeth0", {"vxeth0": "id=100 up"}, pod_key="default/p").networks


def running_pod(uid="u1", ip="10.0.0.1") -> Pod:
    return Pod(uid=uid, namespace="default", name=f"p-{uid}", ip=ip, agent_running=True, phase="Running")


def snapshot(*ips: str) -> Snapshot:
    members = tuple(Member(f"peer{i}", f"default/peer{i}", ip, "vxeth0") for i, ip in enumerate(ips))
    return Snapshot("vxeth0", members + (Member("u1", "default/p-u1", "10.0.0.1", "vxeth0"),))


def releases(calls) -> int:
    """Execs that would release the init agent (the fake's own count says which did)."""
    return sum(1 for argv in calls if "kill -TERM 1" in " ".join(argv))


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
