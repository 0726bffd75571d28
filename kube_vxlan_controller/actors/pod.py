"""PodActor: one per pod UID (never per name: a pod re-created with the same name is a new pod).

Owns everything executed in its pod, one exec at a time (the operations are in `podexec`):
1. setup, when the watcher says the init agent runs: one exec creates the pod's VXLAN interfaces and
   releases the init agent, so the pod's other containers start with the interfaces in place;
2. convergence, once the sidecar runs: when a network says the pod's peers changed, or the pod's networks'
   parameters changed (ConfigMap or annotation), the desired state of all its networks — interfaces as
   their specs say, all-zeros fdb entries exactly the peers — against the pod's kernel state as last read
   or written (`agent.State`), the difference in one exec (`podexec.converge`): in place where the kernel
   allows it, else the link replaced and its fdb put back in the same exec. Each interface changed is
   an Event, `VxlanInterfaceChanged`, naming the old and new values.

It is a state machine (`Status`; the allowed transitions are `TRANSITIONS`, entered only by `_enter`):

    waiting ──▶ setting up ──▶ set up ──▶ ready          any ──▶ failing | forbidden | hung | gone
       └───────────────────────────────────┘ (a pod whose sidecar runs, set up before we saw it)
    failing | forbidden | hung | gone ──▶ (after a retry or the next event) what the pass achieved

Coalescing: a handler records what it learnt; the work runs when the mailbox is empty (a lone event:
at once, no extra hop; else a `Flush` note goes behind what is queued), so a burst of changes that
arrived during an exec becomes one sync. Peer changes
also wait for this pod's window (`settings.coalesce`): it doubles while changes keep coming, up to
`settings.coalesce_max`, and starts over after a quiet spell, so a lone join is synced at once and a
burst of joins costs each member a few syncs instead of one per joining pod.

After every pass it judges the pod's `vxlan.openvnf.org/Wired` condition (`wired.judge`) and hands it to
`conditions` when it differs from what the API holds (as last seen, or as last handed over): the writer
patches it off this thread.

Concurrency contract: the actor blocks only inside an exec (at most the exec deadline, plus the wait for
a process-wide exec slot), so a hung pod delays only itself. Failures retry with this pod's own
backoff; a periodic `Resync` forgets what was observed so drift is repaired. State the query actor may
show is posted to the board after every change.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

import pykka
from loguru import logger

from .. import agent, options
from ..backoff import Backoff
from ..eligibility import Cause, blocking
from ..k8s.errors import Cancelled, ExecTimeout, Forbidden, K8sError, PodGone
from ..messages import Flush, Inspect, PeersChanged, PodRemoved, PodUpdate, Reconcile, Resync, Retry, Snapshot
from ..model import Condition, Pod
from ..options import NetworkSpec
from ..wired import SETTING_UP, Facts, judge
from . import podexec
from .supervisor import child_failed

#: setup attempts before the init agent is released anyway, so that a pod with a network that cannot
#: be set up (say, a route via an unreachable gateway) still starts; the failure is in an Event.
SETUP_ATTEMPTS = 3


class Status(enum.Enum):
    WAITING = "waiting"
    SETTING_UP = "setting up"
    RELEASED = "set up"
    WIRED = "ready"
    FAILING = "failing"
    FORBIDDEN = "forbidden"
    HUNG = "hung"
    GONE = "gone"


_FAILED = frozenset({Status.FAILING, Status.FORBIDDEN, Status.HUNG, Status.GONE})
#: the Wired condition's reason while in a failed status
_FAILURE_REASONS = {Status.FAILING: "Failing", Status.FORBIDDEN: "Forbidden", Status.HUNG: "Hung"}
#: the one place that says which status may follow which (a status may always be re-entered).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.WAITING: frozenset({Status.SETTING_UP, Status.WIRED}) | _FAILED,
    Status.SETTING_UP: frozenset({Status.RELEASED}) | _FAILED,
    Status.RELEASED: frozenset({Status.SETTING_UP, Status.WIRED}) | _FAILED,
    Status.WIRED: frozenset({Status.SETTING_UP}) | _FAILED,
    **{failed: frozenset({Status.WAITING, Status.SETTING_UP, Status.RELEASED, Status.WIRED}) | _FAILED
       for failed in _FAILED},
}


@dataclass(frozen=True, slots=True)
class PodState:
    """What the query actor shows of a pod: as last observed, never fetched on demand."""

    uid: str
    pod_key: str
    ip: str | None
    status: str
    networks: tuple[NetworkSpec, ...]
    fdb: Mapping[str, frozenset[str]] | None = field(default=None)
    error: str = ""
    execs: int = 0
    #: whole passes done (readiness waits for one pass of every pod of the first list)
    passes: int = 0


class PodActor(pykka.ThreadingActor):
    def __init__(self, uid: str, pod_key: str, *, executor, settings, scheduler, events=None, conditions=None,
                 supervisor=None, backoff: Backoff | None = None, board=None, metrics=None,
                 stopping: threading.Event | None = None, clock=time.monotonic) -> None:
        super().__init__()
        self.uid, self.pod_key = uid, pod_key
        self.executor, self.settings, self.scheduler = executor, settings, scheduler
        self.events, self.supervisor, self.board, self.metrics = events, supervisor, board, metrics
        #: `conditions(pod, condition, transition)`: writes the Wired condition; must not block
        self.conditions = conditions
        self.stopping = stopping or threading.Event()
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.status, self.error = Status.WAITING, ""
        self.pod: Pod | None = None
        self.networks: tuple[NetworkSpec, ...] = ()
        #: the annotation's errors (networks that did not resolve)
        self.invalid: tuple[str, ...] = ()
        #: why the controller will not wire the pod (`eligibility`), as the watcher found
        self.causes: tuple[Cause, ...] = ()
        self.snapshots: dict[str, Snapshot] = {}
        #: network → the peers the last sync of it aimed at
        self.synced_peers: dict[str, frozenset[str]] = {}
        #: the setup gave up (its error), until a setup succeeds
        self.setup_failed: str | None = None
        #: the Wired condition as the API holds it: as last seen on the pod, then as last handed over
        self.wired: Condition | None = None
        #: the init agent instance this actor set up and released (`Pod.init_agent_id`); None: none yet
        self.released: str | None = None
        self.setup_attempts = 0
        #: interfaces whose fdb is kept; None: not known yet (read from the pod before the first sync)
        self.managed: frozenset[str] | None = None
        #: the pod's links and fdb as last read or written; None: unknown (read before the next sync)
        self.kernel: agent.State | None = None
        #: network → its interface's differences from its spec, as last judged (for the metric)
        self.differing: dict[str, int] = {}
        # -- what is owed, and when ------------------------------------------------------------------
        self.setup_due = False
        self.sync_due = False
        self.retry_scheduled = False
        self.reconcile_scheduled = False
        self.flush_noted = False
        self.window = settings.coalesce
        self.last_sync = float("-inf")
        #: the last pass ended with a timed-out exec: the next uses the executor's suspect slots
        self.timed_out = False
        #: the last RBAC denial said (log line, Event); said again only when it changes or after a success
        self.denial = ""
        self.execs = 0
        self.passes = 0

    # -- mailbox ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self.scheduler.tell_later(self.settings.resync * random.uniform(0.5, 1.0), self.actor_ref, Resync())

    def on_stop(self) -> None:
        if self.board is not None:
            self.board.remove(self.uid)
        self._count_differing({})

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._count_differing({})
        if self.board is not None:
            self.board.remove(self.uid)
        if self.supervisor is not None:
            self.supervisor.tell(child_failed("pod", self.uid, exception_value, traceback, self.pod_key))

    def on_receive(self, message):
        if isinstance(message, Inspect):
            # An ask: errors go back to the asker. Work owed is done after it.
            if self.sync_due or self.setup_due:
                self._note_flush()
            return self._inspect() if time.monotonic() < message.deadline else None
        # Only the failures `_work` expects are caught (there); anything else is a bug and escapes: pykka
        # stops this actor, `on_failure` tells the supervisor, and a fresh one starts from the pod index.
        if isinstance(message, PodUpdate):
            self._updated(message.pod, message.networks, message.errors, message.causes)
        elif isinstance(message, PeersChanged):
            self.snapshots[message.snapshot.network] = message.snapshot
            self.sync_due = True
        elif isinstance(message, Flush):
            self.flush_noted = False
        elif isinstance(message, Reconcile):
            self.reconcile_scheduled = False
        elif isinstance(message, Retry):
            self.retry_scheduled = False
            self.setup_due, self.sync_due = True, True
        elif isinstance(message, Resync):
            self.kernel, self.sync_due = None, True
            self.scheduler.tell_later(self.settings.resync, self.actor_ref, Resync())
        elif isinstance(message, PodRemoved):
            self.actor_ref.stop(block=False)
            return None
        if self.actor_inbox.empty():  # the last of a burst does the work of all
            self._work()
        else:
            self._note_flush()
        return None

    def _note_flush(self) -> None:
        if not self.flush_noted:
            self.flush_noted = True
            self.actor_ref.tell(Flush())

    def state(self) -> PodState:
        return PodState(self.uid, self.pod_key, self.pod.ip if self.pod else None, self.status.value,
                        self.networks, self.kernel.fdb if self.kernel else None, self.error, self.execs, self.passes)

    def _updated(self, pod: Pod, networks: tuple[NetworkSpec, ...], invalid: tuple[str, ...],
                 causes: tuple[Cause, ...]) -> None:
        if networks != self.networks and self.pod is not None:
            self.sync_due = True  # the interfaces to keep, or their parameters, changed
        first, reasons_changed = self.pod is None, invalid != self.invalid or causes != self.causes
        if first:
            self.wired = pod.wired  # what the API holds: a restarted controller rewrites only what changed
        self.pod, self.networks, self.invalid, self.causes = pod, networks, invalid, causes
        if pod.init_agent_running and pod.init_agent_id != self.released:
            self.setup_due = True
        elif pod.deleting or not (pod.agent_running and networks):
            self._pass_done()  # nothing to sync until a network says who the peers are
        if first or reasons_changed or not pod.agent_running:
            self._judge()  # else the next pass judges
        self._post()

    # -- the work ---------------------------------------------------------------------------------

    def _work(self) -> None:
        pod = self.pod
        if pod is None or pod.deleting or self.stopping.is_set() or self.retry_scheduled:
            return
        if self.setup_due and not (pod.init_agent_running and pod.init_agent_id != self.released):
            self.setup_due = False
        sync = self.sync_due and pod.agent_running and self._window_open()
        if not (self.setup_due or sync):
            return
        run = podexec.PodExec(self.executor, pod, suspect=self.timed_out)
        try:
            if self.setup_due:
                self._enter(Status.SETTING_UP)
                self._setup(run, pod)
            if sync:
                self._sync(run, pod)
        except Cancelled:
            return  # the controller is stopping
        except PodGone as error:
            # Terminal for now: the pod or its container is gone; the watcher says what comes next.
            self._enter(Status.GONE, str(error))
            logger.info("pod {}: {}", pod.key, error)
        except ExecTimeout as error:
            self._failed(pod, Status.HUNG, error)
        except Forbidden as error:
            self._forbidden(pod, error)
        except (K8sError, podexec.ExecFailed, agent.AgentOutputError) as error:
            self._failed(pod, Status.FAILING, error)
        else:
            self.backoff.reset()
            self.timed_out = False
            if run.count:  # an exec went through: a later denial is news again
                self.denial = ""
            if self.status in _FAILED:
                self._enter(Status.WIRED if self.last_sync > float("-inf") and pod.agent_running
                            else Status.RELEASED if self.released is not None else Status.WAITING)
        finally:
            self.execs += run.count
            self._judge()
            self._post()

    def _window_open(self) -> bool:
        """Whether a peer sync may run now; if not, a `Reconcile` is scheduled for when it may."""
        if self.reconcile_scheduled:
            return False
        wait = self.last_sync + self.window - self.clock()
        if wait > 0:
            self.reconcile_scheduled = True
            self.scheduler.tell_later(wait, self.actor_ref, Reconcile())
            return False
        return True

    def _setup(self, run: podexec.PodExec, pod: Pod) -> None:
        self.setup_attempts += 1
        outcome = podexec.setup_and_release(
            run, self.networks, container=self.settings.init_agent, terminate_file=self.settings.terminate_file,
            timeout=self._timeout(), last_attempt=self.setup_attempts >= SETUP_ATTEMPTS)
        for conflict in outcome.conflicts:
            logger.error("pod {}: {}", pod.key, conflict)
            self._event(pod, "VxlanSetupConflict", conflict)
        if outcome.gave_up is not None:
            logger.error("pod {}: setup failed {} times, releasing the init agent anyway: {}", pod.key,
                         self.setup_attempts, outcome.gave_up)
            self._event(pod, "VxlanSetupFailed", str(outcome.gave_up))
        self.setup_failed = str(outcome.gave_up) if outcome.gave_up is not None else None
        for spec in self.networks:
            if outcome.managed is not None and spec.name in outcome.managed:
                logger.info("pod {} network {}: interface {} set up ({})", pod.key, spec.network, spec.name,
                            spec.describe())
        self.released, self.setup_attempts, self.setup_due = pod.init_agent_id, 0, False
        self.managed, self.kernel = outcome.managed, outcome.state
        logger.info("pod {}: init agent terminated", pod.key)
        self._enter(Status.RELEASED)
        if not (pod.agent_running and self.networks):
            self._pass_done()

    def _sync(self, run: podexec.PodExec, pod: Pod) -> None:
        self.sync_due = False
        known = [spec for spec in self.networks if spec.network in self.snapshots]
        if not known:
            return  # no network has published its members yet
        now = self.clock()
        # The window doubles while syncs follow each other closely, and starts over after a quiet spell.
        busy = now - self.last_sync < 2 * self.window
        self.window = min(self.settings.coalesce_max, self.window * 2) if busy else self.settings.coalesce
        self.last_sync = now
        peers = {spec.network: self.snapshots[spec.network].peers_of(self.uid) for spec in known}
        named = options.network_names(pod.annotations.get(self.settings.annotation))
        kernel, self.kernel = self.kernel, None  # unknown while the exec runs (it may fail)
        self.synced_peers = peers
        done = podexec.converge(run, self.networks, peers, kernel, named=named, container=self.settings.agent,
                                timeout=self._timeout())
        self.kernel = done.state
        self.managed = frozenset(spec.name for spec in self.networks if spec.name not in done.state.links
                                 or done.state.links[spec.name].kind == "vxlan")
        for conflict in done.conflicts:
            logger.error("pod {}: {}", pod.key, conflict)
        self._changed(pod, done.links)
        self._enter(Status.WIRED)
        if len(known) == len(self.networks):
            self._pass_done()

    def _changed(self, pod: Pod, links: agent.LinkPlan) -> None:
        """One `VxlanInterfaceChanged` Event per interface changed or removed, naming old and new values."""
        networks = {spec.name: spec.network for spec in self.networks}
        for name, diffs in links.changed.items():
            how = "link replaced, its addresses, routes and fdb entries put back" if name in links.replaced \
                else "changed in place"
            self._event(pod, "VxlanInterfaceChanged", f"network {networks[name]}: interface {name} "
                        f"{', '.join(map(str, diffs))} ({how})", type="Normal")
        for name in links.removed:
            self._event(pod, "VxlanInterfaceChanged", f"interface {name} removed: the pod no longer names its "
                        "network", type="Normal")

    def _inspect(self) -> dict:
        """A fresh read of the pod (refreshes `kernel`): per interface, its fdb lines as `bridge fdb show`
        prints them, its parameters as the kernel has them, and how they differ from the spec."""
        pod = self.pod
        if pod is None or not pod.agent_running:
            return {}
        run = podexec.PodExec(self.executor, pod, suspect=self.timed_out)
        try:
            self.kernel = podexec.read_state(run, container=self.settings.agent)
        finally:
            self.execs += run.count
        lines = agent.fdb_lines(self.kernel.fdb_text)
        answer = {}
        for spec in self.networks:
            link = self.kernel.links.get(spec.name)
            answer[spec.name] = {
                "fdb": lines.get(spec.name, []),
                "net": agent.actual_spec(spec, link).describe() if link is not None else "",
                "differs": [str(d) for d in agent.differences(spec, link, pod.addresses)] if link is not None
                else ["no such interface"]}
        return answer

    # -- outcomes ---------------------------------------------------------------------------------

    def _pass_done(self) -> None:
        """One whole pass: the pod was worked on against the complete membership of its networks (or
        is not a member at all), whatever the outcome. Readiness counts these."""
        self.passes += 1

    def _timeout(self) -> int:
        return agent.in_pod_timeout(self.settings.exec_deadline)

    def _forbidden(self, pod: Pod, error: Forbidden) -> None:
        """RBAC denied an exec: said once per pod (log line and Event) until the denial changes, then
        retried with backoff like any failure, so a restored role takes effect without a restart."""
        if self.denial != str(error):
            self.denial = str(error)
            logger.error("pod {}: the controller lacks a permission, retrying until it is granted: {}", pod.key,
                         error)
            self._event(pod, "VxlanForbidden", f"kube-vxlan-controller lacks a permission: {error}")
        self._failed(pod, Status.FORBIDDEN, error, quiet=True)

    def _failed(self, pod: Pod, status: Status, error: Exception, quiet: bool = False) -> None:
        delay = self.backoff.next()
        self._enter(status, str(error))
        self.timed_out = status is Status.HUNG
        if not (pod.agent_running and self.networks) or all(s.network in self.snapshots for s in self.networks):
            self._pass_done()
        if self.metrics is not None:
            self.metrics.reconcile_errors.labels(status.value).inc()
        logger.log("DEBUG" if quiet else "WARNING", "pod {}: {} ({}); retrying in {:.1f}s", pod.key, error,
                   status.value, delay)
        self.retry_scheduled = True
        self.scheduler.tell_later(delay, self.actor_ref, Retry())

    def _judge(self) -> None:
        """Judge the Wired condition; hand it to the writer when it differs from what the API holds."""
        pod = self.pod
        if pod is None or pod.deleting or self.conditions is None or self.status is Status.GONE:
            return
        cause = blocking(self.causes)
        if cause is None and pod.agent_running and self.managed is None and self.status not in _FAILED:
            return  # set up before this actor saw it: nothing known until its first sync reads the pod
        reason = _FAILURE_REASONS.get(self.status)
        differs = self._differs(pod)
        self._count_differing(differs)
        condition = judge(Facts(
            networks=self.networks, invalid=self.invalid,
            cause=(cause.reason, cause.message) if cause is not None else None,
            failure=(reason, self.error) if reason is not None else None, setup_failed=self.setup_failed,
            managed=self.managed, agent_running=pod.agent_running, fdb=self.kernel.fdb if self.kernel else None,
            peers=self.synced_peers, differs=differs))
        if self.wired is None and condition.reason == SETTING_UP:
            return  # a missing condition holds a readiness gate closed too: a new pod's first write says more
        if condition != self.wired:
            transition = self.wired is None or self.wired.status != condition.status
            self.wired = condition
            self.conditions(pod, condition, transition)

    def _differs(self, pod: Pod) -> dict[str, tuple[str, ...]]:
        """network → how its interface differs from its spec, in the kernel as last read or written."""
        if self.kernel is None:
            return {}
        found = {}
        for spec in self.networks:
            link = self.kernel.links.get(spec.name)
            if link is not None and link.kind == "vxlan":
                diffs = agent.differences(spec, link, pod.addresses)
                if diffs:
                    found[spec.network] = tuple(map(str, diffs))
        return found

    def _count_differing(self, differs: Mapping[str, tuple[str, ...]]) -> None:
        """Keeps `kvc_interfaces_differing{network}` holding this pod's share."""
        now = {network: 1 for network in differs}
        if self.metrics is not None:
            for network in now.keys() | self.differing.keys():
                delta = now.get(network, 0) - self.differing.get(network, 0)
                if delta:
                    self.metrics.interfaces_differing.labels(network).inc(delta)
        self.differing = now

    def _enter(self, status: Status, error: str = "") -> None:
        if status is not self.status and status not in TRANSITIONS[self.status]:
            raise RuntimeError(f"pod {self.pod_key}: {self.status.value} → {status.value} is not a transition")
        self.status, self.error = status, error

    def _event(self, pod: Pod, reason: str, message: str, **kind) -> None:
        if self.events is not None:
            self.events(pod, reason=reason, message=message, **kind)

    def _post(self) -> None:
        if self.board is not None:
            self.board.post(self.state())
