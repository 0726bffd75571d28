"""Every message between actors (and from the k8s streams to the watcher): frozen values only, since
pykka does not copy messages. Each name means one thing.

    PodStream ──PodsListed/PodChanged/PodDeleted──▶ PodWatcher ◀──ConfigChanged── ConfigMapStream
    PodWatcher ──PodUpdate/PodRemoved──▶ NetworkActor (each network the pod names or named), PodActor
    PodWatcher ──Synced──▶ NetworkActor          NetworkActor ──PeersChanged──▶ PodActor
    Supervisor ──Reroute/Rebuild(All)──▶ PodWatcher   NetworkActor ──Resend target──▶ PodActor (PeersChanged)
    every actor ──ChildFailed──▶ Supervisor

Everything is level-based: a message carries the whole current value (a pod, a network's member set),
never a delta to apply blindly. Notes an actor sends itself (`Flush`, `Reconcile`, `Resync`, `Retire`, `HoldCheck`)
say "look again", nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .eligibility import Cause
from .model import Pod
from .options import NetworkSpec

# -- from the k8s streams to the watcher ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodsListed:
    """Every pod matching the selector, as of `resource_version` (after each (re)list)."""

    pods: tuple[Pod, ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class PodChanged:
    """A pod was added or modified."""

    pod: Pod


@dataclass(frozen=True, slots=True)
class PodDeleted:
    """A pod is gone from the API (its last state)."""

    pod: Pod


PodEvent = PodsListed | PodChanged | PodDeleted


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """The network ConfigMap's whole data (empty when it is missing)."""

    data: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StreamDied:
    """A stream thread ended although nobody stopped it: the watcher is blind and must be restarted."""

    stream: str
    error: str


# -- from the watcher to network and pod actors -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodUpdate:
    """The pod as last seen, with the networks its annotation resolves to under the current ConfigMap.
    To its pod actor, and to the actor of every network it names (or named until now)."""

    pod: Pod
    networks: tuple[NetworkSpec, ...]
    #: the annotation's errors: networks it names that did not resolve (the pod is not wired while any)
    errors: tuple[str, ...] = ()
    #: why the controller will not wire the pod at all (`eligibility.causes`; its Wired condition says the first)
    causes: tuple[Cause, ...] = ()


@dataclass(frozen=True, slots=True)
class PodRemoved:
    """The pod is gone (deleted, no longer selected, or vanished during a relist): to its pod actor and
    to every network it named. Not to be confused with `k8s.errors.PodGone`, an exec's outcome."""

    uid: str


@dataclass(frozen=True, slots=True)
class Synced:
    """The watcher has routed every pod of a complete list: membership is whole, snapshots may go out."""


# -- from network actors to pod actors ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One pod's place in one network: its underlay IP, its interface for that network, and the VNI and UDP
    port that interface is to carry (pod options may override the network's)."""

    uid: str
    pod_key: str
    ip: str
    interface: str
    vni: int = 0
    port: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A network's whole membership at one moment (members sorted by pod key)."""

    network: str
    members: tuple[Member, ...]

    def peers_of(self, uid: str) -> frozenset[str]:
        """The IPs of the other members whose interface carries the same VNI and port as `uid`'s: a pod on
        another VNI or port could never receive what an fdb entry would send it."""
        own = next((m for m in self.members if m.uid == uid), None)
        return frozenset(m.ip for m in self.members if m.uid != uid
                         and (own is None or (m.vni, m.port) == (own.vni, own.port)))


@dataclass(frozen=True, slots=True)
class PeersChanged:
    """To every member of a network and every pod that just left it: the network's latest snapshot.
    A network actor's snapshots reach a pod in the order they were made, and a successor's only after
    its predecessor stopped, so the last one received is the current one."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Resend:
    """To a network actor: send your snapshot to this pod again (its actor was restarted)."""

    uid: str


@dataclass(frozen=True, slots=True)
class Retire:
    """A network actor's note to itself: no member and no pod left; stop unless something arrived."""


@dataclass(frozen=True, slots=True)
class HoldCheck:
    """A network actor's note to itself, through the scheduler: see whether its hold is over (stalled or
    too long; see `hold`)."""


@dataclass(frozen=True, slots=True)
class Flush:
    """A network or pod actor's note to itself: work was deferred while its mailbox held more messages
    (they coalesce into it); do it once they are handled."""


# -- notes pod actors send themselves -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The time the pod's reconciler asked to come back at has come (its coalescing window is over, or its
    backoff after a failure): ask it again what to do."""


@dataclass(frozen=True, slots=True)
class Resync:
    """Forget what was observed: the next reconcile re-reads the pod's fdb (repairs drift)."""


@dataclass(frozen=True, slots=True)
class Inspect:
    """Ask (the query actor): read the fdb now and answer with it, device → lines as `bridge fdb show`
    prints them. `deadline` (time.monotonic()): an ask that reaches the actor after it was given up (the
    pod was busy) runs no exec, so abandoned asks cannot pile execs up behind a hung pod."""

    deadline: float = float("inf")


# -- supervision ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """An actor crashed (a bug: handlers catch what they expect); its supervisor decides what follows.
    `kind`: pod, network, watcher, query, or a supervisor's name (pods, networks) when a level gave up."""

    kind: str
    #: what restarting it needs (a pod's UID, a network's name)
    key: str
    error: str
    #: the formatted traceback
    trace: str = ""
    #: how people call it (a pod's namespace/name); the key when empty
    name: str = ""


@dataclass(frozen=True, slots=True)
class Reroute:
    """To the watcher: a pod actor was restarted; send it its pod again, and ask its networks to resend."""

    uid: str


@dataclass(frozen=True, slots=True)
class Rebuild:
    """To the watcher: a network actor was restarted; send its successor every pod that names it."""

    network: str


@dataclass(frozen=True, slots=True)
class Begin:
    """A restarted watcher's note to itself: its restart backoff is over, start the streams."""


@dataclass(frozen=True, slots=True)
class RerouteAll:
    """To the watcher, after the pod level of the tree was restarted: `Reroute` every pod of the index."""


@dataclass(frozen=True, slots=True)
class RebuildAll:
    """To the watcher, after the network level of the tree was restarted: `Rebuild` every network named."""
