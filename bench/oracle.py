"""The oracle: the fewest execs that wire the pods, each issued as soon as the pods allow — T_min.

    python -m bench.oracle --kubeconfig K --configmap '{"vxeth0": "id=100 up"}' --expect N

Its own process, like any contender, and the same means as a controller: the pod watch (the project's
`PodStream`), execs through the project's `Executor` (the official client; the same limit of concurrent
execs, 32, and deadline) and the project's command builders (agent.py), so every exec it runs is one a
controller could run. What it knows that a controller cannot: the pods start empty (no link to read, no
fdb to read), it is their only writer (what it wrote is what is there), the networks (`--configmap`, the
ConfigMap the bench created) and how many pods the first wave has (`--expect`).

The minimal exec set it issues (what the bench's output calls minimal):
- per pod, while its init agent runs: one exec that runs the `ip -batch` setup and then releases the
  init agent (`agent.setup_release_argv`, as the controller runs it; without the controller's check
  that no interface exists yet, which the oracle knows);
- first wave: nothing is written before `--expect` pods run their sidecar (a pod is a member once its
  sidecar runs; before the last one does, no fdb can be exact); then one `bridge -batch` per pod with
  all its peers: 2N execs for N pods;
- afterwards, per member, at most one fdb exec in flight, carrying every change pending for it. A join
  on its own costs 2 + n execs (setup and release, the newcomer's batch, one append in each of the n
  members); a leave, one delete in each remaining member; under churn, changes that arrive while a
  member's exec runs share its next one. With `--coalesce W` a member changed by its peers waits W
  seconds before its exec (a newcomer's own batch does not), so the changes of that window share one
  exec: what a controller's coalescing window (ours: `--coalesce`, 0.1 s) buys, without the reads.

With `--sessions` (the session oracle) each member's fdb batches go over one long-lived exec into its
sidecar (a session), opened by its first batch and kept open: the controller's own `Sidecar`
(sidecar.py, over `k8s.sessions`), so a batch after the first costs no exec; a session that ends is
reopened by the next batch, and a pod that cannot keep one gets one exec per batch. Per pod: the setup
and the session, 2 execs; a join costs the newcomer's 2 and none in the members. Without it, the same
`Sidecar` with sessions off: one exec per batch.

It prints one JSON line whenever everything it knows of is written (`{"idle": …, "execs": …}`); the
bench reads convergence from the kernel, not from these lines.

Concurrency contract: the watch thread calls `on_event`; 32 worker threads run execs; all state is
guarded by one lock, never held across an exec. A member's `Sidecar` is used by one worker at a time
(the member is busy meanwhile) and closed by the worker that finds its member gone, or at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loguru import logger

from kube_vxlan_controller import agent, options
from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.k8s.errors import K8sError, PodGone
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.pods import PodChanged, PodDeleted, PodsListed, PodStream
from kube_vxlan_controller.model import Pod
from kube_vxlan_controller.sidecar import Sidecar

ANNOTATION = "vxlan.openvnf.org/networks"
INIT_AGENT, AGENT = "vxlan-controller-agent-init", "vxlan-controller-agent"
TERMINATE_FILE = "/run/terminate"
RETRY_DELAY = 0.5


@dataclass
class Member:
    pod: Pod
    #: network → interface
    devices: dict[str, str]
    #: its way into its sidecar agent: over a session, or one exec per batch
    sidecar: Sidecar
    #: interface → peer IPs in its fdb (the oracle is the only writer)
    written: dict[str, frozenset[str]] = field(default_factory=dict)
    busy: bool = False


class Oracle:
    def __init__(self, executor: Executor, configmap: dict[str, str], expect: int, *, workers: int = 32,
                 exec_timeout: int = 11, coalesce: float = 0.0, sessions: bool = False) -> None:
        self.executor, self.configmap, self.expect, self.exec_timeout = executor, configmap, expect, exec_timeout
        self.coalesce, self.sessions = coalesce, sessions
        self._due: dict[str, float] = {}  # member → when its peers' changes may be sent (with coalesce)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oracle-exec")
        self._specs: dict[str, tuple[options.NetworkSpec, ...]] = {}
        self._set_up: set[tuple[str, str]] = set()
        self._setups_running = 0
        self.members: dict[str, Member] = {}
        self._networks: dict[str, set[str]] = {}  # network → member UIDs
        self._dirty: set[str] = set()
        self.gate_open = expect <= 0
        self.execs = 0
        self._writing = 0  # members with an fdb exec in flight
        self._was_idle = False

    # -- the watch -------------------------------------------------------------------------------------
    def on_event(self, event) -> None:
        with self._lock:
            if isinstance(event, PodsListed):
                listed = {pod.uid for pod in event.pods}
                for uid in [uid for uid in self.members if uid not in listed]:
                    self._leave(uid)
                for pod in event.pods:
                    self._update(pod)
            elif isinstance(event, PodChanged):
                self._update(event.pod)
            elif isinstance(event, PodDeleted):
                self._leave(event.pod.uid)
                self._specs.pop(event.pod.uid, None)
            self._kick()

    def _update(self, pod: Pod) -> None:
        if pod.deleting:
            self._leave(pod.uid)
            return
        specs = self._specs.get(pod.uid)
        if specs is None:
            specs = self._specs[pod.uid] = options.resolve(pod.annotations.get(ANNOTATION), self.configmap,
                                                           pod_key=pod.key).networks
        if pod.init_agent_running and (pod.uid, pod.init_agent_id) not in self._set_up:
            self._set_up.add((pod.uid, pod.init_agent_id))
            self._setups_running += 1
            self._pool.submit(self._setup, pod, specs)
        if pod.agent_running and pod.ip and pod.uid not in self.members and specs:
            member = self.members[pod.uid] = Member(
                pod, {spec.network: spec.name for spec in specs},
                Sidecar(self.executor, container=AGENT, timeout=self.exec_timeout, sessions=self.sessions))
            for network in member.devices:
                peers = self._networks.setdefault(network, set())
                self._changed(peers)
                peers.add(pod.uid)
            self._dirty.add(pod.uid)
            if not self.gate_open and len(self.members) >= self.expect:
                self.gate_open = True
                self._say(gate_open=len(self.members))
        elif pod.uid in self.members:
            self.members[pod.uid].pod = pod

    def _leave(self, uid: str) -> None:
        member = self.members.pop(uid, None)
        if member is None:
            return
        if not member.busy:  # else the worker writing to it closes it when done
            member.sidecar.close()
        for network in member.devices:
            peers = self._networks.get(network, set())
            peers.discard(uid)
            self._changed(peers)
        self._dirty.discard(uid)
        self._due.pop(uid, None)

    def _changed(self, uids: set[str]) -> None:
        """These members' peers changed: their fdb is due now, or once the coalescing window passed."""
        self._dirty |= uids
        if self.coalesce > 0 and self.gate_open:
            due = time.monotonic() + self.coalesce
            for uid in uids:
                self._due.setdefault(uid, due)

    # -- execs -----------------------------------------------------------------------------------------
    def _desired(self, member: Member) -> dict[str, frozenset[str]]:
        return {dev: frozenset(self.members[uid].pod.ip for uid in self._networks.get(network, ())
                               if uid != member.pod.uid)
                for network, dev in member.devices.items()}

    def _kick(self) -> None:
        """Send each idle member whose fdb differs from its peers one batch with the whole difference."""
        if self.gate_open:
            now = time.monotonic()
            for uid in list(self._dirty):
                member = self.members.get(uid)
                if member is None:
                    self._dirty.discard(uid)
                    continue
                if member.busy or self._due.get(uid, now) > now:
                    continue
                self._dirty.discard(uid)
                self._due.pop(uid, None)
                desired = self._desired(member)
                diff = agent.FdbDiff(
                    add=tuple((dev, ip) for dev, ips in desired.items()
                              for ip in sorted(ips - member.written.get(dev, frozenset()))),
                    delete=tuple((dev, ip) for dev, ips in member.written.items()
                                 for ip in sorted(ips - desired.get(dev, frozenset()))))
                if not diff.empty:
                    member.busy = True
                    self._writing += 1
                    self._pool.submit(self._write, member, diff, desired)
        idle = self.gate_open and not self._setups_running and not self._writing and not self._dirty
        if idle and not self._was_idle:
            self._say(idle=len(self.members), execs=self.execs)
        self._was_idle = idle

    def _run(self, pod: Pod, container: str, argv: list[str], stdin: str | None = None):
        with self._lock:
            self.execs += 1
        return self.executor.run(pod.namespace, pod.name, container, argv, stdin=stdin)

    def _setup(self, pod: Pod, specs: tuple[options.NetworkSpec, ...]) -> None:
        try:
            # links {}: the pods start empty, so no check that none of the links exists yet
            argv, batch = agent.setup_exec(specs, {}, timeout=self.exec_timeout, terminate_file=TERMINATE_FILE,
                                           pod_ips=pod.addresses)
            result = self._run(pod, INIT_AGENT, argv, batch)
            if result.exit_code not in agent.RELEASED_CODES:
                logger.error("oracle: setup and release of {} exited {}: {}", pod.key, result.exit_code,
                             result.stderr)
        except PodGone:
            pass
        except K8sError as error:
            logger.error("oracle: setup of {}: {}", pod.key, error)
        finally:
            with self._lock:
                self._setups_running -= 1
                self._kick()

    def _write(self, member: Member, diff: agent.FdbDiff, desired: dict[str, frozenset[str]]) -> None:
        pod = member.pod
        written = True
        try:
            result, execs = member.sidecar.ask(pod, "fdb", diff.batch())
            with self._lock:
                self.execs += execs
            if not result.ok:  # -force: every line ran; a failed `del` was of an entry already gone
                logger.warning("oracle: fdb batch in {} exited {}: {}", pod.key, result.exit_code, result.stderr)
        except PodGone:
            pass
        except K8sError as error:
            logger.error("oracle: fdb batch in {}: {}; again in {}s", pod.key, error, RETRY_DELAY)
            written = False
        if not written:
            time.sleep(RETRY_DELAY)
        with self._lock:
            if written:
                member.written = {dev: ips for dev, ips in desired.items() if ips}
            member.busy = False
            left = self.members.get(pod.uid) is not member
            self._writing -= 1
            self._dirty.add(pod.uid)
            self._kick()
        if left:
            member.sidecar.close()

    def tick(self, stop: threading.Event) -> None:
        """With a coalescing window: send what became due, every few milliseconds, until `stop`."""
        while not stop.wait(min(0.01, self.coalesce / 4)):
            with self._lock:
                if self._due:
                    self._kick()

    def _say(self, **fields) -> None:
        print(json.dumps({"t": time.monotonic(), **fields}), flush=True)

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for member in self.members.values():
            member.sidecar.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--configmap", required=True, help="the network ConfigMap's data, as JSON")
    parser.add_argument("--expect", type=int, default=0, help="pods of the first wave (0: no first wave)")
    parser.add_argument("--max-concurrent-execs", type=int, default=32)
    parser.add_argument("--exec-deadline", type=float, default=10.0)
    parser.add_argument("--coalesce", type=float, default=0.0,
                        help="seconds a member changed by its peers waits before its fdb exec (default: none)")
    parser.add_argument("--sessions", action="store_true",
                        help="each member's fdb batches over one long-lived exec into its sidecar (a session)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    cluster = connect(args.kubeconfig, namespace="kube-system")
    executor = Executor(cluster, deadline=args.exec_deadline, max_concurrent=args.max_concurrent_execs)
    oracle = Oracle(executor, json.loads(args.configmap), args.expect, workers=args.max_concurrent_execs,
                    exec_timeout=int(args.exec_deadline) + 1, coalesce=args.coalesce, sessions=args.sessions)
    stream = PodStream(cluster, label_selector="vxlan.openvnf.org=true", on_event=oracle.on_event)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()
        stream.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.coalesce > 0:
        threading.Thread(target=oracle.tick, args=(stop,), name="oracle-tick", daemon=True).start()
    try:
        stream.run(stop)
    finally:
        oracle.stop()
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
