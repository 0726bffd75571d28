"""PodActor: one per pod UID (never per name: a pod re-created with the same name is a new pod).

A thin shell over `reconciler.PodReconciler`, which holds the pod's state and decides what to do next.
The actor owns the mailbox, the timers and the tells:
- it feeds each message to the reconciler and, once its mailbox is empty, asks it what to do (a lone
  event: at once, no extra hop; else a `Flush` note goes behind what is queued, so a burst of changes
  that arrived during an exec becomes one sync);
- it runs what the reconciler returns, one exec at a time, in its pod (`podexec`): setup, when the
  watcher says the init agent runs (one exec creates the pod's VXLAN interfaces and releases the init
  agent, so the pod's other containers start with the interfaces in place); convergence, once the
  sidecar runs (the desired state of all its networks against the pod's kernel state, the difference in
  one exec); and reports the outcome back, sorting the failures it expects by name (exec failed, timed
  out, denied, pod gone);
- it keeps the timers: a `Reconcile` when the reconciler asks to come back later (its backoff after a
  failure, its coalescing window), a periodic `Resync` that makes it forget what it observed so drift is
  repaired;
- it tells: the Events the reconciler returns, the `vxlan.openvnf.org/Wired` condition to `conditions`
  when the reconciler's verdict says it changed (the writer patches it off this thread), the pod's
  state to the board after every change, the metrics.

Let it crash: anything it does not expect escapes; pykka stops the actor, `on_failure` tells the
supervisor, and a fresh one starts from the watcher's pod index (and re-reads the pod before a sync).

Concurrency contract: the actor blocks only inside an exec (at most the exec deadline, plus the wait for
a process-wide exec slot), so a hung pod delays only itself.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Mapping

import pykka

from .. import agent
from ..backoff import Backoff
from ..k8s.errors import Cancelled, ExecTimeout, Forbidden, K8sError, PodGone
from ..messages import Flush, Inspect, PeersChanged, PodRemoved, PodUpdate, Reconcile, Resync
from ..reconciler import After, Converge, Event, PodReconciler, PodState, Setup, Status, Verdict
from .. import podexec
from ..sidecar import Sidecar
from .supervisor import child_failed


class PodActor(pykka.ThreadingActor):
    def __init__(self, uid: str, pod_key: str, *, executor, settings, scheduler, events=None, conditions=None,
                 supervisor=None, backoff: Backoff | None = None, board=None, metrics=None,
                 stopping: threading.Event | None = None, clock=time.monotonic) -> None:
        super().__init__()
        self.uid = uid
        self.reconciler = PodReconciler(uid, pod_key, settings=settings, backoff=backoff)
        self.executor, self.settings, self.scheduler = executor, settings, scheduler
        self.events, self.supervisor, self.board, self.metrics = events, supervisor, board, metrics
        #: `conditions(pod, condition, transition)`: writes the Wired condition; must not block
        self.conditions = conditions
        self.stopping = stopping or threading.Event()
        self.clock = clock
        #: a `Flush` is in the mailbox
        self.flush_noted = False
        #: when the `Reconcile` scheduled last arrives; None: none on its way
        self.wake_at: float | None = None
        #: network → its interface's differences from its spec, as last judged (for the metric)
        self.differing: dict[str, int] = {}
        #: the way into the pod's sidecar: its session, kept across passes (closed when the actor stops)
        self.sidecar = Sidecar(executor, container=settings.agent, timeout=agent.in_pod_timeout(settings.exec_deadline),
                               sessions=settings.sessions == "on", metrics=metrics)

    # -- mailbox ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self.scheduler.tell_later(self.settings.resync * random.uniform(0.5, 1.0), self.actor_ref, Resync())

    def on_stop(self) -> None:
        self.sidecar.close()
        if self.board is not None:
            self.board.remove(self.uid)
        self._count_differing({})

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.sidecar.close()
        self._count_differing({})
        if self.board is not None:
            self.board.remove(self.uid)
        if self.supervisor is not None:
            self.supervisor.tell(child_failed("pod", self.uid, exception_value, traceback, self.reconciler.pod_key))

    def on_receive(self, message):
        if isinstance(message, Inspect):
            # An ask: errors go back to the asker. Work owed is done after it.
            if self.reconciler.owed:
                self._note_flush()
            return self._inspect() if time.monotonic() < message.deadline else None
        # Only the failures `_pass` expects are caught (there); anything else is a bug and escapes: pykka
        # stops this actor, `on_failure` tells the supervisor, and a fresh one starts from the pod index.
        if isinstance(message, PodUpdate):
            self._judged(self.reconciler.updated(message.pod, message.networks, message.errors, message.causes))
            self._post()
        elif isinstance(message, PeersChanged):
            self.reconciler.peers_changed(message.snapshot)
        elif isinstance(message, Flush):
            self.flush_noted = False
        elif isinstance(message, Reconcile):
            self.wake_at = None
        elif isinstance(message, Resync):
            self.reconciler.resync()
            self.sidecar.retry()
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
        return self.reconciler.state()

    # -- the work ---------------------------------------------------------------------------------

    def _work(self) -> None:
        if self.stopping.is_set():
            return
        action = self.reconciler.next(self.clock())
        if isinstance(action, After):
            self._come_back(action)
        elif action is not None:
            self._pass(action)

    def _pass(self, action) -> None:
        """Run what the reconciler says until it says nothing more is to be run now; report the outcome."""
        r = self.reconciler
        pod = r.pod
        run = podexec.PodExec(self.executor, pod, self.sidecar, suspect=r.suspect)
        timeout = agent.in_pod_timeout(self.settings.exec_deadline)
        try:
            while isinstance(action, (Setup, Converge)):
                if isinstance(action, Setup):
                    outcome = podexec.setup_and_release(
                        run, action.networks, container=self.settings.init_agent,
                        terminate_file=self.settings.terminate_file, timeout=timeout,
                        last_attempt=action.last_attempt)
                    self._tell(pod, r.set_up(outcome.managed, outcome.state, outcome.conflicts, outcome.gave_up))
                else:
                    started = self.clock()
                    done = podexec.converge(run, action.networks, action.peers, action.kernel, named=action.named)
                    self._tell(pod, r.converged(done.state, done.links, done.conflicts, self.clock() - started))
                action = r.next(self.clock())
        except Cancelled:
            return  # the controller is stopping
        except PodGone as error:
            r.gone(error)
        except ExecTimeout as error:
            action = self._failed(pod, Status.HUNG, error)
        except Forbidden as error:
            action = self._failed(pod, Status.FORBIDDEN, error)
        except (K8sError, podexec.ExecFailed, agent.AgentOutputError) as error:
            action = self._failed(pod, Status.FAILING, error)
        else:
            r.succeeded(run.count)
        finally:
            r.counted(run.count)
        # Judged only after an outcome the reconciler knows: an unexpected exception escapes before it, so a
        # crashing actor writes no condition from half-updated state (its successor judges).
        self._judged(r.judge())
        self._post()
        if isinstance(action, After):
            self._come_back(action)

    def _failed(self, pod, status: Status, error: Exception) -> After:
        retry, events = self.reconciler.failed(status, error, self.clock())
        self._tell(pod, events)
        if self.metrics is not None:
            self.metrics.reconcile_errors.labels(status.value).inc()
        return retry

    def _come_back(self, after: After) -> None:
        """A `Reconcile` in `after.delay` seconds, unless one is on its way by then."""
        at = self.clock() + after.delay
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at
            self.scheduler.tell_later(after.delay, self.actor_ref, Reconcile())

    def _inspect(self) -> dict:
        """A fresh read of the pod (see `PodReconciler.read`)."""
        r = self.reconciler
        if not r.readable:
            return {}
        run = podexec.PodExec(self.executor, r.pod, self.sidecar, suspect=r.suspect)
        try:
            state = podexec.read_state(run)
        finally:
            r.counted(run.count)
        return r.read(state)

    # -- tells ------------------------------------------------------------------------------------

    def _judged(self, verdict: Verdict | None) -> None:
        """Hand a changed Wired condition to the writer; keep the metric of differing interfaces."""
        if verdict is None or self.conditions is None:
            return
        self._count_differing(verdict.differs)
        if verdict.write is not None:
            self.conditions(self.reconciler.pod, verdict.write, verdict.transition)

    def _count_differing(self, differs: Mapping[str, tuple[str, ...]]) -> None:
        """Keeps `kvc_interfaces_differing{network}` holding this pod's share."""
        now = {network: 1 for network in differs}
        if self.metrics is not None:
            for network in now.keys() | self.differing.keys():
                delta = now.get(network, 0) - self.differing.get(network, 0)
                if delta:
                    self.metrics.interfaces_differing.labels(network).inc(delta)
        self.differing = now

    def _tell(self, pod, events: list[Event]) -> None:
        if self.events is not None:
            for event in events:
                self.events(pod, reason=event.reason, message=event.message, type=event.type)

    def _post(self) -> None:
        if self.board is not None:
            self.board.post(self.reconciler.state())
