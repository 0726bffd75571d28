"""NetworkActor: one per network name; owns that network's membership.

A member is a pod whose sidecar agent runs, whose IP is known, that is not being deleted, and whose
annotation names this network validly. On a change the actor publishes a new immutable `Snapshot` to
every pod actor concerned — the members and any pod that just left — which then reconcile their fdb
against it (level-based: they read the whole set, they never apply a delta).

Concurrency contract: owns `members`; never blocks (tells only). Bursts coalesce: changes mark the
network dirty and one `_Publish` note goes to itself, so a burst of updates yields one snapshot.
Snapshots wait for the watcher's first `Synced`, so a restarted controller never publishes a partial
membership that would make pods drop entries of peers not yet seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pykka
from loguru import logger

from ..messages import ChildFailed, Member, MemberUpdate, PeersChanged, Retire, Snapshot, Synced


@dataclass(frozen=True, slots=True)
class _Publish:
    pass


class NetworkActor(pykka.ThreadingActor):
    def __init__(self, name: str, *, registry, supervisor=None, metrics=None, generation: int = 0) -> None:
        super().__init__()
        self.name, self.metrics, self.generation = name, metrics, generation
        self.registry = registry
        self.supervisor = supervisor
        self.members: dict[str, Member] = {}
        self.version = 0
        self.synced = False
        self.dirty = False
        self.publish_pending = False
        self.left: set[str] = set()
        self.snapshot = Snapshot(name, 0, (), generation)

    def on_receive(self, message):
        try:
            if isinstance(message, MemberUpdate):
                self._update(message)
            elif isinstance(message, Synced):
                self.synced = True
                self.dirty = self.dirty or message.republish
                self._schedule_publish()
            elif isinstance(message, _Publish):
                self._publish()
            elif isinstance(message, Retire):
                self._publish()  # the last leaver's peers hear of it before this actor goes
                if self.metrics is not None:
                    self.metrics.drop_members(self.name, self.generation)
                self.actor_ref.stop(block=False)
        except Exception:
            logger.exception("network {}: failed to handle {}", self.name, message)

    def current(self) -> Snapshot:
        """The latest published snapshot (for the query actor and tests: ask, never from a tell handler)."""
        return self.snapshot

    def _update(self, message: MemberUpdate) -> None:
        old = self.members.get(message.uid)
        if message.member == old:
            return
        if message.member is None:
            del self.members[message.uid]
            self.left.add(message.uid)
            logger.info("network {}: pod {} left ({} members)", self.name, old.pod_key, len(self.members))
        else:
            self.members[message.uid] = message.member
            self.left.discard(message.uid)
            if old is None:
                logger.info("network {}: pod {} joined with {} ({} members)", self.name,
                            message.member.pod_key, message.member.ip, len(self.members))
        self.dirty = True
        self._schedule_publish()

    def _schedule_publish(self) -> None:
        if self.synced and self.dirty and not self.publish_pending:
            self.publish_pending = True
            self.actor_ref.tell(_Publish())

    def _publish(self) -> None:
        self.publish_pending = False
        if not self.dirty:
            return
        self.dirty = False
        self.version += 1
        self.snapshot = Snapshot(self.name, self.version,
                                 tuple(sorted(self.members.values(), key=lambda m: m.pod_key)), self.generation)
        if self.metrics is not None:
            self.metrics.set_members(self.name, self.generation, len(self.members))
        message = PeersChanged(self.snapshot)
        for uid in list(self.members) + sorted(self.left):
            ref = self.registry.existing_pod(uid)
            if ref is not None:
                try:
                    ref.tell(message)
                except pykka.ActorDeadError:
                    pass
        self.left.clear()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildFailed("network", self.name, repr(exception_value)))
