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

Who is told: the members and the pods that left, except while a `Hold` (see `hold`) keeps changes back:
then the pods that left only, and everybody once the pods that were on their way have joined. A
newcomer joining during a hold waits too, but at most `stall` seconds of its own (then it hears the
membership as it is, and again at the hold's end): a burst costs each pod one fdb sync, not two.
`HoldCheck` notes, through the scheduler, end a stalled hold and tell newcomers whose wait is over.

Concurrency contract: owns `pods` (every pod naming the network, with its `Member` when it is one);
never blocks (tells only). Bursts coalesce with no timer: a snapshot is made when the mailbox is empty
(else a `Flush` note goes behind what is queued), so the updates that piled up yield one snapshot.
Snapshots wait for `Synced` (the first complete list), so a restarted controller never publishes a
partial membership that would make pods drop entries of peers not yet seen.
"""

from __future__ import annotations

import time

import pykka
from loguru import logger

from ..messages import (Flush, HoldCheck, Member, PeersChanged, PodRemoved, PodUpdate, Resend, Retire,
                        Snapshot, Synced)
from ..hold import STALL, Hold, longest_for, worth_holding
from .supervisor import child_failed

#: pod phases after which a pod will not join: not waited for
FINISHED = frozenset({"Succeeded", "Failed"})


class NetworkActor(pykka.ThreadingActor):
    def __init__(self, name: str, *, registry, supervisor=None, metrics=None, synced: bool = False,
                 scheduler=None, hold: float = 0.0, stall: float = STALL, clock=time.monotonic) -> None:
        super().__init__()
        self.name, self.registry, self.supervisor, self.metrics = name, registry, supervisor, metrics
        self.synced = synced
        #: holds need the scheduler (for `HoldCheck`); without one, or with `hold` 0, nothing is held
        self.scheduler, self.hold_length, self.stall, self.clock = scheduler, hold, stall, clock
        #: every pod that names this network: its Member while it is one, else None
        self.pods: dict[str, Member | None] = {}
        #: pods naming the network on their way to joining it (not members, not deleting, not finished)
        self.coming: set[str] = set()
        #: members told a snapshot since they joined (a hold keeps changes back from these only)
        self.told: set[str] = set()
        self.hold: Hold | None = None
        #: newcomers a hold keeps waiting: uid → when it joined (told after `stall` at the latest)
        self.waiting: dict[str, float] = {}
        #: when the HoldCheck now scheduled is due (None: none is)
        self.check_due: float | None = None
        #: when the network's current growth began (its first hold); None: not growing
        self.growing_since: float | None = None
        self.snapshot = Snapshot(name, ())
        self.dirty = False
        #: pods that left since the last snapshot: they hear of it too, to drop their peers
        self.left: set[str] = set()
        self.retiring = False
        self.flush_noted = False

    def on_receive(self, message):
        if isinstance(message, PodUpdate):
            self._update(message)
        elif isinstance(message, PodRemoved):
            self._set(message.uid, None, named=False)
        elif isinstance(message, Synced):
            self.synced = True
        elif isinstance(message, Flush):
            self.flush_noted = False
        elif isinstance(message, HoldCheck):
            self._check_hold()
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

    def current(self) -> Snapshot:
        """The latest published snapshot (for the query actor and tests: ask, never from a tell handler)."""
        return self.snapshot

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(child_failed("network", self.name, exception_value, traceback))

    def _update(self, message: PodUpdate) -> None:
        pod = message.pod
        spec = next((s for s in message.networks if s.network == self.name), None)
        member = pod.joinable and spec is not None
        on_its_way = spec is not None and not member and not pod.deleting and pod.phase not in FINISHED
        self._set(pod.uid, Member(pod.uid, pod.key, spec.underlay_ip(pod.addresses), spec.name, spec.vni,
                                  spec.effective_dstport) if member else None, named=spec is not None,
                  on_its_way=on_its_way)

    def _set(self, uid: str, member: Member | None, *, named: bool, on_its_way: bool = False) -> None:
        if on_its_way:
            self.coming.add(uid)
        else:
            self.coming.discard(uid)
            if self.hold is not None:
                self.hold.arrived(uid, self.clock())
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
        if self.hold is not None and not self.hold.awaited:
            self._release()
        if self.dirty and self.synced:
            self.dirty = False
            members = tuple(sorted((m for m in self.pods.values() if m is not None), key=lambda m: m.pod_key))
            self.snapshot = Snapshot(self.name, members)
            if self.metrics is not None:
                self.metrics.members.labels(self.name).set(len(members))
            uids = [m.uid for m in members]
            self.told &= set(uids)
            if self.hold is None and self.told and self.hold_length > 0 and self.scheduler is not None:
                if worth_holding(len(self.coming), len(self.told)):
                    self._begin_hold()
                else:
                    self.growing_since = None  # a change told at once: the growth is over
            targets = self._newcomers_due(uids) if self.hold is not None else uids
            message = PeersChanged(self.snapshot)
            for uid in targets + sorted(self.left):
                self._tell(uid, message)
            self.told.update(targets)
            self.left.clear()
            if self.waiting:
                self._schedule_check()
        if not self.pods and not self.retiring:
            self.retiring = True
            self.actor_ref.tell(Retire())

    def _begin_hold(self) -> None:
        now = self.clock()
        if self.growing_since is None:
            self.growing_since = now
        self.hold = Hold.begin(self.coming, now, longest_for(self.hold_length, now - self.growing_since))
        logger.debug("network {}: {} members hear of changes once {} pods on their way joined", self.name,
                     len(self.told), len(self.coming))
        self._schedule_check()

    def _check_hold(self) -> None:
        self.check_due = None
        if self.hold is None:
            return
        if self.hold.over(self.clock(), stall=self.stall):
            self._release()
            return
        if self.synced:
            message = PeersChanged(self.snapshot)
            for uid in self._newcomers_due([m.uid for m in self.snapshot.members]):
                self._tell(uid, message)
                self.told.add(uid)
        self._schedule_check()

    def _newcomers_due(self, members: list[str]) -> list[str]:
        """Under a hold: start the wait of members not told yet; return (and stop waiting for) those whose
        wait reached `stall`."""
        now, present = self.clock(), set(members)
        self.waiting = {uid: since for uid, since in self.waiting.items() if uid in present}
        for uid in members:
            if uid not in self.told:
                self.waiting.setdefault(uid, now)
        due = sorted(uid for uid, since in self.waiting.items() if now - since >= self.stall)
        for uid in due:
            del self.waiting[uid]
        return due

    def _schedule_check(self) -> None:
        """A HoldCheck for when the hold may be over or the first waiting newcomer is due (unless one is
        scheduled for then or earlier already)."""
        due = self.hold.check_at(stall=self.stall)
        if self.waiting:
            due = min(due, min(self.waiting.values()) + self.stall)
        if self.check_due is not None and self.check_due <= due:
            return
        self.check_due = due
        self.scheduler.tell_later(due - self.clock(), self.actor_ref, HoldCheck())

    def _release(self) -> None:
        """The hold is over: every member hears the latest membership."""
        logger.debug("network {}: hold over after {:.1f}s ({} of the awaited pods still on their way)", self.name,
                     self.clock() - self.hold.since, len(self.hold.awaited))
        self.hold = None
        self.told.clear()
        self.waiting.clear()
        self.dirty = True

    def _tell(self, uid: str, message) -> None:
        ref = self.registry.existing_pod(uid)
        if ref is not None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass

    def _size(self) -> int:
        return sum(1 for m in self.pods.values() if m is not None)
