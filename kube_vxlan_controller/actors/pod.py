"""PodActor: one per pod UID (never per name: a pod re-created with the same name is a new pod).

Owns everything executed in its pod, one exec at a time, each with the executor's hard deadline:
1. setup, while the init agent container runs: read the links, apply the idempotent `ip -batch` that
   creates/configures one VXLAN interface per network, then `kill -TERM 1` the init agent so the pod's
   other containers start with the interfaces in place;
2. then, while the sidecar agent runs, reconcile the fdb: desired peers of all its networks (from the
   network actors' snapshots) against the pod's actual all-zeros entries, the difference in one
   `bridge -batch` exec.

Concurrency contract: the actor blocks only inside an exec (at most the exec deadline, plus the wait
for a process-wide exec slot), so a hung pod delays only itself. Requests that arrive meanwhile
coalesce: each marks the actor dirty and at most one `Reconcile` waits in the mailbox. Failures retry
with this pod's own backoff; a periodic `Resync` forgets what was observed so drift is repaired.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import pykka
from loguru import logger

from .. import agent
from ..backoff import Backoff
from ..k8s.errors import ExecTimeout, K8sError, PodGone
from ..messages import ChildFailed, PeersChanged, PodGone as PodGoneMessage, PodUpdate, Reconcile, Resync, Snapshot
from ..model import ExecResult, Pod
from ..options import NetworkSpec

#: setup attempts before the init agent is released anyway, so that a pod with a network that cannot
#: be set up (say, a route via an unreachable gateway) still starts; the failure is in an Event.
SETUP_ATTEMPTS = 3


class ExecFailed(Exception):
    def __init__(self, container: str, argv: list[str], result: ExecResult) -> None:
        self.container, self.argv, self.result = container, argv, result
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")[:500]
        super().__init__(f"container {container}: `{' '.join(argv)}` exited {result.exit_code}: {detail}")


@dataclass(frozen=True, slots=True)
class PodState:
    """What the query actor shows of a pod: as last observed, never fetched on demand."""

    uid: str
    pod_key: str
    ip: str | None
    status: str
    networks: tuple[NetworkSpec, ...]
    fdb: dict[str, frozenset[str]] | None = field(default=None)
    error: str = ""
    execs: int = 0
    #: reconcile passes done (readiness waits for one pass of every pod of the first list)
    passes: int = 0


class PodActor(pykka.ThreadingActor):
    def __init__(self, uid: str, pod_key: str, *, executor, settings, scheduler, events=None,
                 supervisor=None, backoff: Backoff | None = None, board=None, metrics=None,
                 stopping: threading.Event | None = None) -> None:
        super().__init__()
        self.uid, self.pod_key = uid, pod_key
        self.executor, self.settings, self.scheduler = executor, settings, scheduler
        self.events, self.supervisor, self.board, self.metrics = events, supervisor, board, metrics
        self.stopping = stopping or threading.Event()
        self.backoff = backoff or Backoff()
        self.pod: Pod | None = None
        self.networks: tuple[NetworkSpec, ...] = ()
        self.snapshots: dict[str, Snapshot] = {}
        self.setup_done = False
        #: interface names this actor set up itself; None when the pod was set up before it started
        #: (a restarted controller), and then every network of the annotation is taken as set up.
        self.setup_names: frozenset[str] | None = None
        self.setup_attempts = 0
        self.observed: dict[str, frozenset[str]] | None = None
        self.pending = False
        self.retry_scheduled = False
        self.status = "waiting"
        self.error = ""
        self.execs = 0
        self.passes = 0

    # -- mailbox ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self.scheduler.tell_later(self.settings.resync * random.uniform(0.5, 1.0), self.actor_ref, Resync())

    def on_stop(self) -> None:
        if self.board is not None:
            self.board.remove(self.uid)

    def on_receive(self, message):
        if isinstance(message, Inspect):
            return self._inspect()  # an ask: errors go back to the asker
        try:
            if isinstance(message, PodUpdate):
                self.pod, self.networks = message.pod, message.networks
                self._set(self.status, self.error)
                self._request()
            elif isinstance(message, PeersChanged):
                self.snapshots[message.snapshot.network] = message.snapshot
                self._request(self.settings.coalesce)
            elif isinstance(message, Reconcile):
                self.pending = False
                self._reconcile()
            elif isinstance(message, _Retry):
                self.retry_scheduled = False
                self._request()
            elif isinstance(message, Resync):
                self.observed = None
                self.scheduler.tell_later(self.settings.resync, self.actor_ref, Resync())
                self._request()
            elif isinstance(message, PodGoneMessage):
                self.status = "gone"
                self.actor_ref.stop(block=False)
        except Exception as error:
            logger.exception("pod {}: failed to handle {}: {}", self.pod_key, type(message).__name__, error)

    def state(self) -> PodState:
        return PodState(self.uid, self.pod_key, self.pod.ip if self.pod else None, self.status,
                        self.networks, self.observed, self.error, self.execs, self.passes)

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildFailed("pod", self.uid, repr(exception_value)))

    def _request(self, delay: float = 0.0) -> None:
        """Ask for one reconcile; requests made before it runs are folded into it. A delay (peer
        changes) widens that window: during a burst of joins a member reconciles once per window
        instead of once per joining pod."""
        if not self.pending:
            self.pending = True
            if delay > 0:
                self.scheduler.tell_later(delay, self.actor_ref, Reconcile())
            else:
                self.actor_ref.tell(Reconcile())

    # -- the work ---------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        pod = self.pod
        self.passes += 1
        if pod is None or pod.deleting or self.stopping.is_set():
            self._set(self.status, self.error)
            return
        try:
            if not self.setup_done and pod.init_agent_running:
                self._setup(pod)
            if pod.agent_running:
                self._sync_fdb(pod)
        except PodGone as error:
            # Terminal for now: the pod or its container is gone; the watcher says what comes next.
            self._set("gone", str(error))
            logger.info("pod {}: {}", pod.key, error)
        except ExecTimeout as error:
            self._failed(pod, "hung", error)
        except (K8sError, ExecFailed, agent.AgentOutputError) as error:
            self._failed(pod, "failing", error)
        else:
            self.backoff.reset()
            self._set("ready" if pod.agent_running else ("set up" if self.setup_done else "waiting"))

    def _setup(self, pod: Pod) -> None:
        self._set("setting up")
        container = self.settings.init_agent
        if self.networks:
            self.setup_attempts += 1
            links = agent.parse_links(self._exec(pod, container, agent.LINKS_ARGV).stdout)
            for conflict in agent.setup_conflicts(self.networks, links):
                logger.error("pod {}: {}", pod.key, conflict)
                self._event(pod, "VxlanSetupConflict", conflict)
            batch = agent.setup_batch(self.networks, links, underlay=pod.ip)
            if batch:
                try:
                    self._exec(pod, container, agent.batch_argv("ip", self._timeout()), stdin=batch)
                except ExecFailed as error:
                    if self.setup_attempts < SETUP_ATTEMPTS:
                        raise
                    logger.error("pod {}: setup failed {} times, releasing the init agent anyway: {}",
                                 pod.key, self.setup_attempts, error)
                    self._event(pod, "VxlanSetupFailed", str(error))
            for spec in self.networks:
                logger.info("pod {} network {}: interface {} set up ({})", pod.key, spec.network, spec.name,
                            spec.describe())
            if not any(spec.name in links for spec in self.networks):
                # Every interface was created just now, so every fdb is empty: no need to read it.
                self.observed = {spec.name: frozenset() for spec in self.networks}
        self._exec(pod, container, agent.TERMINATE_ARGV)
        if self.settings.terminate_file:
            self._touch_terminate_file(pod, container)
        self.setup_done = True
        self.setup_names = frozenset(spec.name for spec in self.networks)
        logger.info("pod {}: init agent terminated", pod.key)

    def _touch_terminate_file(self, pod: Pod, container: str) -> None:
        """Older agent images ignore TERM as PID 1 and wait for this file instead. Ours has already
        exited on TERM by now, so "container not running" is the expected answer: not an error."""
        try:
            self.executor.run(pod.namespace, pod.name, container, ["touch", self.settings.terminate_file])
            self.execs += 1
        except (PodGone, ExecTimeout, K8sError) as error:
            logger.debug("pod {}: touch {}: {}", pod.key, self.settings.terminate_file, error)

    def _sync_fdb(self, pod: Pod) -> None:
        # Only interfaces that exist are managed: a network that became valid after setup (say, its id
        # was added to the ConfigMap later) gets an interface only when the pod is set up again.
        desired = {spec.name: self.snapshots[spec.network].peers_of(self.uid)
                   for spec in self.networks if spec.network in self.snapshots
                   and (self.setup_names is None or spec.name in self.setup_names)}
        if not desired:
            return
        container = self.settings.agent
        if self.observed is None:
            self.observed = agent.parse_fdb(self._exec(pod, container, agent.FDB_ARGV).stdout)
        diff = agent.fdb_diff(desired, self.observed)
        for dev, ip in diff.invalid:
            logger.error("pod {}: not adding peer {!r} on {!r}: not a valid device/address", pod.key, ip, dev)
        if diff.empty:
            return
        try:
            self._exec(pod, container, agent.batch_argv("bridge", self._timeout()),
                       stdin=agent.fdb_batch(desired, self.observed))
        except Exception:
            self.observed = None  # partly applied, or not at all: read again next time
            raise
        self.observed = {**self.observed, **desired}
        by_dev = {spec.name: spec.network for spec in self.networks}
        for dev, ip in diff.add:
            logger.info("pod {} network {}: fdb += {} on {}", pod.key, by_dev.get(dev, "?"), ip, dev)
        for dev, ip in diff.delete:
            logger.info("pod {} network {}: fdb -= {} on {}", pod.key, by_dev.get(dev, "?"), ip, dev)

    def _inspect(self) -> dict[str, list[str]]:
        """A fresh read of the pod's fdb, as the pod reports it (device → lines); refreshes `observed`."""
        pod = self.pod
        if pod is None or not pod.agent_running:
            return {}
        stdout = self._exec(pod, self.settings.agent, agent.FDB_ARGV).stdout
        self.observed = agent.parse_fdb(stdout)
        return agent.fdb_lines(stdout)

    def _exec(self, pod: Pod, container: str, argv: list[str], stdin: str | None = None) -> ExecResult:
        self.execs += 1
        result = self.executor.run(pod.namespace, pod.name, container, argv, stdin=stdin)
        if not result.ok:
            raise ExecFailed(container, argv, result)
        return result

    def _timeout(self) -> int:
        """`timeout N` inside the pod: a little over the exec deadline, so an abandoned exec ends itself."""
        return int(self.settings.exec_deadline) + 1

    def _failed(self, pod: Pod, status: str, error: Exception) -> None:
        delay = self.backoff.next()
        self._set(status, str(error))
        if self.metrics is not None:
            self.metrics.reconcile_errors.labels(status).inc()
        logger.warning("pod {}: {} ({}); retrying in {:.1f}s", pod.key, error, status, delay)
        if not self.retry_scheduled:
            self.retry_scheduled = True
            self.scheduler.tell_later(delay, self.actor_ref, _Retry())

    def _event(self, pod: Pod, reason: str, message: str) -> None:
        if self.events is not None:
            self.events(pod, reason=reason, message=message)

    def _set(self, status: str, error: str = "") -> None:
        self.status, self.error = status, error
        if self.board is not None:
            self.board.post(self.state())


@dataclass(frozen=True, slots=True)
class Inspect:
    """Ask: read the fdb now and answer with it, device → lines as `bridge fdb show` prints them."""


@dataclass(frozen=True, slots=True)
class _Retry:
    at: float = field(default_factory=time.monotonic)
