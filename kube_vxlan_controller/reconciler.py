"""PodReconciler: one pod's state, and what to do next for it — plain single-threaded code, no pykka.

The pod actor (`actors/pod.py`) is a thin shell around it: it owns the mailbox, the timers and the tells.
It feeds in what it learns (`updated`, `peers_changed`, `resync`), asks `next(now)` what to do, runs the
operation returned (`podexec`) and reports the outcome (`set_up`, `converged`, `failed`, `gone`,
`succeeded`, `read`). As controller-runtime's `Reconcile` returns a `Result`, `next` returns one of:

- `Setup`: create the pod's interfaces and release its init agent (one exec, `podexec.setup_and_release`);
- `Converge`: make its interfaces and fdb what its networks' specs and peers say (`podexec.converge`);
- `NoExec`: the work owed needed no exec (a sync with no network's members known yet); the pass is over;
- `After(delay)`: work is owed, but not before `delay` seconds (the backoff after a failure, or the
  coalescing window); come back then;
- None: nothing is owed.

A pass is what one turn of the actor runs: `next` until it returns no exec, then `succeeded` (or, when an
exec raised, `failed`/`gone`), then `judge`.

State: one `Status` (what the pod is, entered only by `_enter`, its transitions in `TRANSITIONS`) and one
`Owed` (the work still owed: setup, sync, both or nothing); the rest is what was observed (the pod, its
networks, the members of each network, its kernel state as last read or written) and the timing of
the coalescing window and the backoff.

    waiting ──▶ setting up ──▶ set up ──▶ synced          any ──▶ failing | forbidden | hung | gone
       └───────────────────────────────────┘ (a pod whose sidecar runs, set up before we saw it)
    failing | forbidden | hung | gone ──▶ (after a retry or the next event) what the pass achieved

Coalescing: the work a burst of changes owes is one `Owed` value, so it runs once. Peer changes also wait
for this pod's window (`settings.coalesce`). While syncs follow each other closely the window follows the
load: it grows (at most doubling at each sync, up to `settings.coalesce_max`) to `SYNC_SPACING` times what
the last sync took, and shrinks back as fast when syncs get quick again; after a quiet spell it starts
over. A lone join is synced at once; under steady churn on an idle controller (a sync over a session takes
milliseconds) members follow their peers within `settings.coalesce`; when syncs slow down — execs, a
loaded node, a queue for the exec slots — each pod syncs less often, so a burst of joins costs each member
a few syncs instead of one per joining pod.

After every pass the `vxlan.openvnf.org/Wired` condition is judged (`wired.judge`); `judge` says when it
differs from what the API holds (as last seen, or as last handed over), so the actor hands it over.

Concurrency contract: none — one owner (the pod actor's thread) calls it; it never blocks, never reads
a clock (`now` is passed in) and runs nothing itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from loguru import logger

from . import agent, options
from .backoff import Backoff
from .eligibility import Cause, blocking
from .messages import Snapshot
from .model import Condition, Pod
from .options import NetworkSpec
from .wired import SETTING_UP, Facts, judge

#: setup attempts before the init agent is released anyway, so that a pod with a network that cannot
#: be set up (say, a route via an unreachable gateway) still starts; the failure is in an Event.
SETUP_ATTEMPTS = 3

#: under steady changes, a pod's window is this many times what its last sync took (within
#: `--coalesce` and `--coalesce-max`): its syncs then take at most about a fifth of its time, and as they
#: slow down with the load (on the controller, the node, the API server) they come less often. What a sync
#: takes includes waiting for its turn: a join syncs every member at once, so each took is the whole
#: fan-out's. 8 held the last members of a join about a second behind at a moderate churn (2+2 pods/s); 4
#: keeps them within one, at the cost of some batching when churn saturates the machine (docs/benchmarks.md)
SYNC_SPACING = 4


class Status(enum.Enum):
    #: nothing done yet: the init agent has not run, or the sidecar runs but no sync has been owed yet
    WAITING = "waiting"
    #: the setup exec runs (or runs again)
    SETTING_UP = "setting up"
    #: interfaces made and the init agent released; the sidecar not synced yet
    SET_UP = "set up"
    #: the last sync made the interfaces and fdb what the specs and the peers say
    SYNCED = "synced"
    #: the last pass failed: an exec failed, its output was unreadable, or the API refused it
    FAILING = "failing"
    #: the last pass was denied by RBAC
    FORBIDDEN = "forbidden"
    #: the last pass timed out: the next one uses the executor's suspect slots
    HUNG = "hung"
    #: the pod or its container is gone; the watcher says what comes next
    GONE = "gone"


FAILED = frozenset({Status.FAILING, Status.FORBIDDEN, Status.HUNG, Status.GONE})
#: the Wired condition's reason while in a failed status
_FAILURE_REASONS = {Status.FAILING: "Failing", Status.FORBIDDEN: "Forbidden", Status.HUNG: "Hung"}
#: the one place that says which status may follow which (a status may always be re-entered).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.WAITING: frozenset({Status.SETTING_UP, Status.SYNCED}) | FAILED,
    Status.SETTING_UP: frozenset({Status.SET_UP}) | FAILED,
    Status.SET_UP: frozenset({Status.SETTING_UP, Status.SYNCED}) | FAILED,
    Status.SYNCED: frozenset({Status.SETTING_UP}) | FAILED,
    **{failed: frozenset({Status.WAITING, Status.SETTING_UP, Status.SET_UP, Status.SYNCED}) | FAILED
       for failed in FAILED},
}


class Owed(enum.Flag):
    """The work a pod is owed: its setup (the init agent runs an instance not set up yet), a sync (its
    networks' members or parameters changed, or its kernel state is to be re-read), both or nothing."""

    NOTHING = 0
    SETUP = enum.auto()
    SYNC = enum.auto()


# -- what `next` returns ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    networks: tuple[NetworkSpec, ...]
    #: the last attempt: release the init agent even when the setup fails
    last_attempt: bool


@dataclass(frozen=True, slots=True)
class Converge:
    networks: tuple[NetworkSpec, ...]
    #: network → its peers' IPs, for the networks whose members are known
    peers: dict[str, frozenset[str]]
    #: the kernel state as last read or written; None: read it first
    kernel: agent.State | None
    #: the networks the pod's annotation names (the interfaces of others are removed)
    named: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoExec:
    """The work owed needed no exec: the pass is over."""


@dataclass(frozen=True, slots=True)
class After:
    delay: float


# -- what the actor tells and publishes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event about the pod, for the actor to record."""

    reason: str
    message: str
    type: str = "Warning"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judgement of the Wired condition: `write` it when not None (`transition`: its status changed)."""

    #: network → how its interface differs from its spec (for `kvc_interfaces_differing`)
    differs: Mapping[str, tuple[str, ...]]
    write: Condition | None = None
    transition: bool = False


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


class PodReconciler:
    def __init__(self, uid: str, pod_key: str, *, settings, backoff: Backoff | None = None) -> None:
        self.uid, self.pod_key, self.settings = uid, pod_key, settings
        self.backoff = backoff or Backoff()
        self.status, self.error = Status.WAITING, ""
        self.owed = Owed.NOTHING
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
        #: the init agent instance set up and released (`Pod.init_agent_id`); None: none yet
        self.released: str | None = None
        self.setup_attempts = 0
        #: interfaces whose fdb is kept; None: not known yet (read from the pod before the first sync)
        self.managed: frozenset[str] | None = None
        #: the pod's links and fdb as last read or written; None: unknown (read before the next sync)
        self.kernel: agent.State | None = None
        #: what the last converge said of interface names held by links of another kind, as logged
        self.conflicts: tuple[str, ...] = ()
        #: no work before this time: the backoff after the last failure
        self.retry_at = float("-inf")
        #: the coalescing window, and when the last sync started
        self.window = settings.coalesce
        self.last_sync = float("-inf")
        #: the last RBAC denial said (log line, Event); said again only when it changes or after a success
        self.denial = ""
        self.execs = 0
        self.passes = 0

    # -- what the actor learns -------------------------------------------------------------------

    def updated(self, pod: Pod, networks: tuple[NetworkSpec, ...], invalid: tuple[str, ...],
                causes: tuple[Cause, ...] = ()) -> Verdict | None:
        """The watcher's latest view of the pod; a `Verdict` when the condition is to be judged now."""
        if networks != self.networks and self.pod is not None:
            self.owed |= Owed.SYNC  # the interfaces to keep, or their parameters, changed
        first, reasons_changed = self.pod is None, invalid != self.invalid or causes != self.causes
        if first:
            self.wired = pod.wired  # what the API holds: a restarted controller rewrites only what changed
        self.pod, self.networks, self.invalid, self.causes = pod, networks, invalid, causes
        if self._needs_setup():
            self.owed |= Owed.SETUP
        elif pod.deleting or not (pod.agent_running and networks):
            self._pass_done()  # nothing to sync until a network says who the peers are
        if first or reasons_changed or not pod.agent_running:
            return self.judge()  # else the next pass judges
        return None

    def peers_changed(self, snapshot: Snapshot) -> None:
        self.snapshots[snapshot.network] = snapshot
        self.owed |= Owed.SYNC

    def resync(self) -> None:
        """Forget the kernel state: the next sync re-reads it (repairs drift)."""
        self.kernel = None
        self.owed |= Owed.SYNC

    # -- what to do next ---------------------------------------------------------------------------

    def next(self, now: float) -> Setup | Converge | NoExec | After | None:
        """What to do now (see the module docstring). An exec returned is committed to (the status, the
        attempts, the window and the work owed say it runs): the caller runs it and reports its outcome."""
        pod = self.pod
        if pod is None or pod.deleting:
            return None
        if now < self.retry_at:
            return After(self.retry_at - now)
        if Owed.SETUP in self.owed and not self._needs_setup():
            self.owed &= ~Owed.SETUP
        if Owed.SETUP in self.owed:
            self._enter(Status.SETTING_UP)
            self.setup_attempts += 1
            return Setup(self.networks, last_attempt=self.setup_attempts >= SETUP_ATTEMPTS)
        if Owed.SYNC not in self.owed or not pod.agent_running:
            return None
        wait = self.last_sync + self.window - now
        if wait > 0:
            return After(wait)
        self.owed &= ~Owed.SYNC
        known = [spec for spec in self.networks if spec.network in self.snapshots]
        if not known and self.networks:
            return NoExec()  # no network has published its members yet
        # (no network at all: a converge of nothing still removes the interfaces of networks it named)
        if now - self.last_sync >= 2 * self.window:
            self.window = self.settings.coalesce  # after a quiet spell the window starts over
        self.last_sync = now
        self.synced_peers = {spec.network: self.snapshots[spec.network].peers_of(self.uid) for spec in known}
        kernel, self.kernel = self.kernel, None  # unknown while the exec runs (it may fail)
        return Converge(self.networks, dict(self.synced_peers), kernel,
                        options.network_names(pod.annotations.get(self.settings.annotation)))

    @property
    def suspect(self) -> bool:
        """The last exec timed out: the next ones use the executor's suspect slots."""
        return self.status is Status.HUNG

    def _needs_setup(self) -> bool:
        pod = self.pod
        return pod is not None and pod.init_agent_running and pod.init_agent_id != self.released

    # -- outcomes --------------------------------------------------------------------------------

    def set_up(self, managed: frozenset[str] | None, state: agent.State | None, conflicts: tuple[str, ...] = (),
               gave_up: Exception | None = None) -> list[Event]:
        """The `Setup` ran (`podexec.SetupOutcome`'s fields): the init agent is released."""
        pod, events = self.pod, []
        for conflict in conflicts:
            logger.error("pod {}: {}", pod.key, conflict)
            events.append(Event("VxlanSetupConflict", conflict))
        if gave_up is not None:
            logger.error("pod {}: setup failed {} times, releasing the init agent anyway: {}", pod.key,
                         self.setup_attempts, gave_up)
            events.append(Event("VxlanSetupFailed", str(gave_up)))
        self.setup_failed = str(gave_up) if gave_up is not None else None
        for spec in self.networks:
            if managed is not None and spec.name in managed:
                logger.info("pod {} network {}: interface {} set up ({})", pod.key, spec.network, spec.name,
                            spec.describe())
        self.released, self.setup_attempts = pod.init_agent_id, 0
        self.owed &= ~Owed.SETUP
        self.managed, self.kernel = managed, state
        logger.info("pod {}: init agent terminated", pod.key)
        self._enter(Status.SET_UP)
        if not (pod.agent_running and self.networks):
            self._pass_done()
        return events

    def converged(self, state: agent.State, links: agent.LinkPlan, conflicts: tuple[str, ...] = (),
                  took: float = 0.0) -> list[Event]:
        """The `Converge` ran (`podexec.Converged`'s fields) in `took` seconds; one `VxlanInterfaceChanged`
        Event per interface changed or removed, naming old and new values."""
        pod = self.pod
        self.kernel = state
        s = self.settings  # the window follows what the syncs take
        self.window = min(s.coalesce_max, self.window * 2, max(s.coalesce, SYNC_SPACING * took))
        self.managed = frozenset(spec.name for spec in self.networks if spec.name not in state.links
                                 or state.links[spec.name].kind == "vxlan")
        if conflicts != self.conflicts:  # said once, not at every resync
            for conflict in conflicts:
                logger.error("pod {}: {}", pod.key, conflict)
            self.conflicts = conflicts
        self._enter(Status.SYNCED)
        if len(self.synced_peers) == len(self.networks):
            self._pass_done()
        networks = {spec.name: spec.network for spec in self.networks}
        events = []
        for name, diffs in links.changed.items():
            how = "link replaced, its addresses, routes and fdb entries put back" if name in links.replaced \
                else "changed in place"
            events.append(Event("VxlanInterfaceChanged", f"network {networks[name]}: interface {name} "
                                f"{', '.join(map(str, diffs))} ({how})", type="Normal"))
        for name in links.removed:
            events.append(Event("VxlanInterfaceChanged", f"interface {name} removed: the pod no longer names its "
                                "network", type="Normal"))
        return events

    def succeeded(self, execs: int) -> None:
        """The pass ended without an exception; `execs`: how many it ran."""
        self.backoff.reset()
        if execs:  # an exec went through: a later denial is news again
            self.denial = ""
        if self.status in FAILED:
            self._enter(Status.SYNCED if self.last_sync > float("-inf") and self.pod.agent_running
                        else Status.SET_UP if self.released is not None else Status.WAITING)

    def gone(self, error: Exception) -> None:
        """Terminal for now: the pod or its container is gone; the watcher says what comes next."""
        self._enter(Status.GONE, str(error))
        logger.info("pod {}: {}", self.pod.key, error)

    def failed(self, status: Status, error: Exception, now: float) -> tuple[After, list[Event]]:
        """An exec failed (`FAILING`), timed out (`HUNG`) or was denied (`FORBIDDEN`): everything is owed
        again after this pod's backoff (the `After` returned). An RBAC denial is said once (log line and
        Event) until it changes, so a restored role takes effect without a restart and a lasting one does
        not flood."""
        events = []
        quiet = status is Status.FORBIDDEN
        if quiet and self.denial != str(error):
            self.denial = str(error)
            logger.error("pod {}: the controller lacks a permission, retrying until it is granted: {}",
                         self.pod.key, error)
            events.append(Event("VxlanForbidden", f"kube-vxlan-controller lacks a permission: {error}"))
        delay = self.backoff.next()
        self._enter(status, str(error))
        pod = self.pod
        if not (pod.agent_running and self.networks) or all(s.network in self.snapshots for s in self.networks):
            self._pass_done()
        logger.log("DEBUG" if quiet else "WARNING", "pod {}: {} ({}); retrying in {:.1f}s", pod.key, error,
                   status.value, delay)
        self.owed |= Owed.SETUP | Owed.SYNC
        self.retry_at = now + delay
        return After(delay), events

    def counted(self, execs: int) -> None:
        """Execs run in the pod, whatever their outcome (the board shows the count)."""
        self.execs += execs

    def _pass_done(self) -> None:
        """One whole pass: the pod was worked on against the complete membership of its networks (or
        is not a member at all), whatever the outcome. Readiness counts these."""
        self.passes += 1

    def _enter(self, status: Status, error: str = "") -> None:
        if status is not self.status and status not in TRANSITIONS[self.status]:
            raise RuntimeError(f"pod {self.pod_key}: {self.status.value} → {status.value} is not a transition")
        self.status, self.error = status, error

    # -- what is published -------------------------------------------------------------------------

    def judge(self) -> Verdict | None:
        """Judge the Wired condition; None when there is nothing to judge (no pod yet, deleting, gone, or
        set up before this actor saw it and not read yet)."""
        pod = self.pod
        if pod is None or pod.deleting or self.status is Status.GONE:
            return None
        cause = blocking(self.causes)
        if cause is None and pod.agent_running and self.managed is None and self.status not in FAILED:
            return None  # set up before this actor saw it: nothing known until its first sync reads the pod
        reason = _FAILURE_REASONS.get(self.status)
        differs = self._differs(pod)
        condition = judge(Facts(
            networks=self.networks, invalid=self.invalid,
            cause=(cause.reason, cause.message) if cause is not None else None,
            failure=(reason, self.error) if reason is not None else None, setup_failed=self.setup_failed,
            managed=self.managed, agent_running=pod.agent_running, fdb=self.kernel.fdb if self.kernel else None,
            peers=self.synced_peers, differs=differs))
        if self.wired is None and condition.reason == SETTING_UP:
            # a missing condition holds a readiness gate closed too: a new pod's first write says more
            return Verdict(differs)
        if condition == self.wired:
            return Verdict(differs)
        transition = self.wired is None or self.wired.status != condition.status
        self.wired = condition
        return Verdict(differs, condition, transition)

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

    def state(self) -> PodState:
        pod = self.pod
        return PodState(self.uid, self.pod_key, pod.ip if pod else None, self.status.value, self.networks,
                        self.kernel.fdb if self.kernel else None, self.error, self.execs, self.passes)

    def read(self, state: agent.State) -> dict:
        """A fresh read of the pod (`podexec.read_state`, for `inspect`): per interface, its fdb lines as
        `bridge fdb show` prints them, its parameters as the kernel has them, and how they differ from
        the spec."""
        self.kernel = state
        lines = agent.fdb_lines(state.fdb_text)
        answer = {}
        for spec in self.networks:
            link = state.links.get(spec.name)
            answer[spec.name] = {
                "fdb": lines.get(spec.name, []),
                "net": agent.actual_spec(spec, link).describe() if link is not None else "",
                "differs": [str(d) for d in agent.differences(spec, link, self.pod.addresses)] if link is not None
                else ["no such interface"]}
        return answer

    @property
    def readable(self) -> bool:
        """Whether the pod can be read now (its sidecar runs)."""
        return self.pod is not None and self.pod.agent_running
