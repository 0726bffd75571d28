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
from ..k8s.errors import Cancelled, ExecTimeout, Forbidden, K8sError, PodGone
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
        #: the init agent instance this actor set up and released (`Pod.init_agent_id`); None: none yet
        self.released: str | None = None
        #: interfaces whose fdb is kept (see `_managed_interfaces`); None: not known yet
        self.managed: frozenset[str] | None = None
        self.setup_attempts = 0
        self.observed: dict[str, frozenset[str]] | None = None
        self.pending = False
        self.retry_scheduled = False
        self.status = "waiting"
        self.error = ""
        self.execs = 0
        self.passes = 0
        #: the last pass ended with a timed-out exec: this pass uses the executor's suspect slots
        self.suspect = False

    # -- mailbox ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self.scheduler.tell_later(self.settings.resync * random.uniform(0.5, 1.0), self.actor_ref, Resync())

    def on_stop(self) -> None:
        if self.board is not None:
            self.board.remove(self.uid)

    def on_receive(self, message):
        if isinstance(message, Inspect):
            # An ask: errors go back to the asker.
            return self._inspect() if time.monotonic() < message.deadline else None
        try:
            if isinstance(message, PodUpdate):
                self.pod, self.networks = message.pod, message.networks
                self._set(self.status, self.error)
                self._request()
            elif isinstance(message, PeersChanged):
                snapshot = message.snapshot
                if snapshot.newer_than(self.snapshots.get(snapshot.network)):
                    self.snapshots[snapshot.network] = snapshot
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
        if pod is None or pod.deleting or self.stopping.is_set():
            self._pass_done()
            return
        # Decided once per pass: the status changes ("setting up") before the first exec.
        self.suspect = self.status == "hung"
        try:
            if pod.init_agent_running and pod.init_agent_id != self.released:
                self._setup(pod)
            if pod.agent_running:
                self._sync_fdb(pod)
        except Cancelled:
            return  # the controller is stopping
        except PodGone as error:
            # Terminal for now: the pod or its container is gone; the watcher says what comes next.
            self._set("gone", str(error))
            logger.info("pod {}: {}", pod.key, error)
        except ExecTimeout as error:
            self._failed(pod, "hung", error)
        except Forbidden as error:
            self._forbidden(pod, error)
        except (K8sError, ExecFailed, agent.AgentOutputError) as error:
            self._failed(pod, "failing", error)
        else:
            self.backoff.reset()
            self._set("ready" if pod.agent_running else ("set up" if self.released is not None else "waiting"))
        if not pod.agent_running or all(spec.network in self.snapshots for spec in self.networks):
            self._pass_done()

    def _pass_done(self) -> None:
        """One whole pass: the pod was worked on against the complete membership of its networks (or
        is not a member at all), whatever the outcome. Readiness counts these."""
        self.passes += 1
        self._set(self.status, self.error)

    def _setup(self, pod: Pod) -> None:
        self._set("setting up")
        container = self.settings.init_agent
        names: frozenset[str] | None = frozenset()
        if self.networks:
            self.setup_attempts += 1
            links = agent.parse_links(self._exec(pod, container, agent.LINKS_ARGV).stdout)
            conflicts = agent.setup_conflicts(self.networks, links)
            for conflict in conflicts:
                logger.error("pod {}: {}", pod.key, conflict)
                self._event(pod, "VxlanSetupConflict", conflict)
            names = frozenset(spec.name for spec in self.networks
                              if spec.name not in links or links[spec.name].kind == "vxlan")
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
                    names = None  # partly applied: which interfaces exist is read before the fdb is kept
            for spec in self.networks:
                if names is not None and spec.name in names:
                    logger.info("pod {} network {}: interface {} set up ({})", pod.key, spec.network, spec.name,
                                spec.describe())
            if names is not None and not any(spec.name in links for spec in self.networks):
                # Every interface was created just now, so every fdb is empty: no need to read it.
                self.observed = {name: frozenset() for name in names}
        self._release(pod, container)
        self.released = pod.init_agent_id
        self.setup_attempts = 0
        self.managed = names
        logger.info("pod {}: init agent terminated", pod.key)

    def _managed_interfaces(self, pod: Pod) -> frozenset[str]:
        """The interfaces whose fdb this actor keeps: those it set up, or — when it did not set the pod
        up itself (a restarted controller) or the setup half failed — the VXLAN links of the pod's
        networks that exist with the right VNI, read once. A network that became valid after setup
        (its id added to the ConfigMap later) gets no fdb until the pod is set up again."""
        if self.managed is None:
            links = agent.parse_links(self._exec(pod, self.settings.agent, agent.LINKS_ARGV).stdout)
            self.managed = frozenset(spec.name for spec in self.networks if spec.name in links
                                     and links[spec.name].kind == "vxlan" and links[spec.name].vni == spec.vni)
        return self.managed

    def _release(self, pod: Pod, container: str) -> None:
        """Release the init agent; it is released when the exec says so or the container is gone."""
        try:
            self._exec(pod, container, agent.release_argv(self.settings.terminate_file), ok=agent.RELEASED_CODES)
        except PodGone:
            pass  # the init agent is not running any more: that is what we wanted

    def _sync_fdb(self, pod: Pod) -> None:
        if not any(spec.network in self.snapshots for spec in self.networks):
            return  # no network has published its members yet
        managed = self._managed_interfaces(pod)
        desired = {spec.name: self.snapshots[spec.network].peers_of(self.uid)
                   for spec in self.networks if spec.network in self.snapshots and spec.name in managed}
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
                       stdin=diff.batch())
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

    def _exec(self, pod: Pod, container: str, argv: list[str], stdin: str | None = None,
              ok: frozenset[int] = frozenset({0})) -> ExecResult:
        self.execs += 1
        result = self.executor.run(pod.namespace, pod.name, container, argv, stdin=stdin, suspect=self.suspect)
        if result.exit_code not in ok:
            raise ExecFailed(container, argv, result)
        return result

    def _timeout(self) -> int:
        """`timeout N` inside the pod: a little over the exec deadline, so an abandoned exec ends itself."""
        return int(self.settings.exec_deadline) + 1

    def _forbidden(self, pod: Pod, error: Forbidden) -> None:
        """RBAC denied an exec: said once per pod (log line and Event) until the denial changes, then
        retried with backoff like any failure, so a restored role takes effect without a restart."""
        if (self.status, self.error) != ("forbidden", str(error)):
            logger.error("pod {}: the controller lacks a permission, retrying until it is granted: {}", pod.key,
                         error)
            self._event(pod, "VxlanForbidden", f"kube-vxlan-controller lacks a permission: {error}")
        self._failed(pod, "forbidden", error, quiet=True)

    def _failed(self, pod: Pod, status: str, error: Exception, quiet: bool = False) -> None:
        delay = self.backoff.next()
        self._set(status, str(error))
        if self.metrics is not None:
            self.metrics.reconcile_errors.labels(status).inc()
        logger.log("DEBUG" if quiet else "WARNING", "pod {}: {} ({}); retrying in {:.1f}s", pod.key, error, status,
                   delay)
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
    """Ask: read the fdb now and answer with it, device → lines as `bridge fdb show` prints them.

    `deadline` (time.monotonic()): an ask that reaches the actor after it was given up (the pod was
    busy) runs no exec, so abandoned asks cannot pile execs up behind a hung pod."""

    deadline: float = float("inf")


@dataclass(frozen=True, slots=True)
class _Retry:
    """The backoff after a failure is over: try again."""
