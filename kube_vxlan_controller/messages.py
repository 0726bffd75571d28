"""Messages between actors: frozen values only (pykka does not copy messages).

Flow: PodWatcher → PodUpdate/PodGone → PodActor; PodWatcher → MemberUpdate/Synced → NetworkActor;
NetworkActor → PeersChanged → PodActor. Everything is level-based: a message carries the whole current
value (a pod, a network's member set), never a delta to apply blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Pod
from .options import NetworkSpec


@dataclass(frozen=True, slots=True)
class PodUpdate:
    """The pod as last seen, with the networks its annotation resolves to under the current ConfigMap."""

    pod: Pod
    networks: tuple[NetworkSpec, ...]


@dataclass(frozen=True, slots=True)
class PodGone:
    uid: str


@dataclass(frozen=True, slots=True)
class Member:
    """One pod's place in one network: its underlay IP and its interface for that network."""

    uid: str
    pod_key: str
    ip: str
    interface: str


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """`member` None: the pod is not (or no longer) a member of this network."""

    uid: str
    member: Member | None


@dataclass(frozen=True, slots=True)
class Synced:
    """The watcher has told this network about every pod of a complete list: snapshots are now whole.

    `republish`: send the current snapshot to every member even if nothing changed (after a replay, so
    that a restarted pod actor learns its peers)."""

    republish: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    network: str
    version: int
    members: tuple[Member, ...]
    #: which network actor made it: a network actor retired when its last member left and one started
    #: for the same name right after may both publish; (generation, version) orders their snapshots.
    generation: int = 0

    def newer_than(self, other: "Snapshot | None") -> bool:
        return other is None or (self.generation, self.version) > (other.generation, other.version)

    def peers_of(self, uid: str) -> frozenset[str]:
        return frozenset(m.ip for m in self.members if m.uid != uid)


@dataclass(frozen=True, slots=True)
class PeersChanged:
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Retire:
    """To a network actor whose last member left: publish what is left to publish, then stop."""


@dataclass(frozen=True, slots=True)
class Reconcile:
    """A pod actor's note to itself: compare desired with observed and apply the difference."""


@dataclass(frozen=True, slots=True)
class Resync:
    """Forget what was observed: the next reconcile re-reads the pod's fdb (repairs drift)."""


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """An actor crashed (a bug: handlers catch what they expect); the supervisor decides what follows."""

    kind: str
    key: str
    error: str


@dataclass(frozen=True, slots=True)
class Replay:
    """Ask the watcher to send every pod's current state again (after an actor was restarted)."""
