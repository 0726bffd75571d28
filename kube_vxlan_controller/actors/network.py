"""NetworkActor: one per network name; the only owner of that network's membership.

The watcher routes every update of a pod that names this network (or named it until now) here. A member
is a pod whose sidecar agent runs, whose IP is known, that is not being deleted, and whose annotation
names this network validly. When membership changes the actor publishes a new immutable `Snapshot` to
the pod actors concerned — the members and any pod that just left — which then sync their fdb against
it (level-based: they read the whole set, they never apply a delta).

Retirement is this actor's own decision: when no pod names the network any more it tells itself
`Retire`, and stops if nothing arrived meanwhile (`Registry.retire_network` makes that check and the
removal atomic with the watcher's tells); the next pod naming the network starts a new actor. A crashed
actor's successor is rebuilt by the watcher from its pod index, then `Synced`.

Concurrency contract: owns `pods` (every pod naming the network, with its `Member` when it is one);
never blocks (tells only). Bursts coalesce with no timer: a snapshot is made when the mailbox is empty
(else a `Flush` note goes behind what is queued), so the updates that piled up yield one snapshot. Snapshots wait for `Synced` (the first complete
list), so a restarted controller never publishes a partial membership that would make pods drop
entries of peers not yet seen.
"""

from __future__ import annotations

import pykka
from loguru import logger

from ..messages import ChildFailed, Flush, Member, PeersChanged, PodRemoved, PodUpdate, Resend, Retire, Snapshot, Synced


class NetworkActor(pykka.ThreadingActor):
    def __init__(self, name: str, *, registry, supervisor=None, metrics=None, synced: bool = False) -> None:
        super().__init__()
        self.name, self.registry, self.supervisor, self.metrics = name, registry, supervisor, metrics
        self.synced = synced
        #: every pod that names this network: its Member while it is one, else None
        self.pods: dict[str, Member | None] = {}
        self.snapshot = Snapshot(name, ())
        self.dirty = False
        #: pods that left since the last snapshot: they hear of it too, to drop their peers
        self.left: set[str] = set()
        self.retiring = False
        self.flush_noted = False

    def on_receive(self, message):
        try:
            if isinstance(message, PodUpdate):
                self._update(message)
            elif isinstance(message, PodRemoved):
                self._set(message.uid, None, named=False)
            elif isinstance(message, Synced):
                self.synced = True
            elif isinstance(message, Flush):
                self.flush_noted = False
            elif isinstance(message, Resend):
                if self.synced:
                    self._tell(message.uid, PeersChanged(self.snapshot))
            elif isinstance(message, Retire):
                self.retiring = False
                if not self.pods and self.registry.retire_network(self.name, self.actor_ref, self.actor_inbox.empty):
                    logger.info("network {}: no pod names it any more: retired", self.name)
                    if self.metrics is not None:
                        self.metrics.drop_members(self.name)
                    self.actor_ref.stop(block=False)
                    return
            if self.actor_inbox.empty():
                self._settle()
            elif not self.flush_noted:  # after what is queued now (a burst coalesces)
                self.flush_noted = True
                self.actor_ref.tell(Flush())
        except Exception:
            logger.exception("network {}: failed to handle {}", self.name, message)

    def current(self) -> Snapshot:
        """The latest published snapshot (for the query actor and tests: ask, never from a tell handler)."""
        return self.snapshot

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildFailed("network", self.name, repr(exception_value)))

    def _update(self, message: PodUpdate) -> None:
        pod = message.pod
        spec = next((s for s in message.networks if s.network == self.name), None)
        member = pod.agent_running and pod.ip and not pod.deleting and spec is not None
        self._set(pod.uid, Member(pod.uid, pod.key, pod.ip, spec.name) if member else None, named=spec is not None)

    def _set(self, uid: str, member: Member | None, *, named: bool) -> None:
        old = self.pods.get(uid)
        if named:
            self.pods[uid] = member
        else:
            self.pods.pop(uid, None)
        if member == old:
            return
        if member is None:
            self.left.add(uid)
            logger.info("network {}: pod {} left ({} members)", self.name, old.pod_key, self._size())
        else:
            self.left.discard(uid)
            if old is None:
                logger.info("network {}: pod {} joined with {} ({} members)", self.name, member.pod_key,
                            member.ip, self._size())
        self.dirty = True

    def _settle(self) -> None:
        """At the end of a burst: publish what changed, and retire when no pod names the network."""
        if self.dirty and self.synced:
            self.dirty = False
            members = tuple(sorted((m for m in self.pods.values() if m is not None), key=lambda m: m.pod_key))
            self.snapshot = Snapshot(self.name, members)
            if self.metrics is not None:
                self.metrics.members.labels(self.name).set(len(members))
            message = PeersChanged(self.snapshot)
            for uid in [m.uid for m in members] + sorted(self.left):
                self._tell(uid, message)
            self.left.clear()
        if not self.pods and not self.retiring:
            self.retiring = True
            self.actor_ref.tell(Retire())

    def _tell(self, uid: str, message) -> None:
        ref = self.registry.existing_pod(uid)
        if ref is not None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass

    def _size(self) -> int:
        return sum(1 for m in self.pods.values() if m is not None)
