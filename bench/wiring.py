"""What the pods' fdbs should hold and what the kernel says they hold, and when the two met.

Two feeds, each on its own thread: the pod watch (`seen`, `leaving`, `gone`: IPs, networks, sidecar
state) and the poller (`fdb_changed`: the kernel's entries with the time they were read). Pure
bookkeeping under one lock; `evaluate(now)` does the comparing, as often as the caller likes (a few
times a second): every time it reports is a time the kernel gave, so how often it runs changes no
figure, only how soon it is known.

Definitions (the bench's, for every contender alike):
- alive: a pod the bench created and has not asked to delete (and the API has not marked deleting);
- wired: an alive pod whose fdb is known and holds, on each of its networks' interfaces, exactly the IPs
  of the other alive pods of that network (every alive pod of the network must have an IP for that);
  it is wired since the later of its fdb's last change and the last change of its networks' members;
- join lag (when `track_events`): from the time the watch first shows a pod's sidecar agent running to
  the time every pod of its networks that was a member then (sidecar running) and is still alive holds
  its IP (the latest of their entries' arrival times); a later member getting it is that one's own join;
- leave lag: from the time the bench asks to delete a pod to the time no alive pod holds its IP any more
  (the latest removal). Pods deleted before every peer had them count apart (`unwired_leaves`), and
  joins that never completed because the pod left first count as `abandoned_joins`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class PodView:
    uid: str
    name: str
    #: network → interface name in this pod
    networks: dict[str, str]
    ip: str | None = None
    running_at: float | None = None
    leaving_at: float | None = None
    #: interface → peer IPs, as the kernel says; `known` once the poller's first dump of the pod is in
    fdb: dict[str, set[str]] = field(default_factory=dict)
    known: bool = False
    added_at: dict[tuple[str, str], float] = field(default_factory=dict)
    removed_at: dict[tuple[str, str], float] = field(default_factory=dict)
    changed_at: float = 0.0
    wired_since: float | None = None

    @property
    def alive(self) -> bool:
        return self.leaving_at is None

    def holds(self, dev: str, ip: str) -> bool:
        return self.known and ip in self.fdb.get(dev, ())


@dataclass(frozen=True, slots=True)
class Count:
    wired: int
    total: int
    #: the latest `wired_since` of the wired pods (None when none is wired)
    last_wired: float | None


class Wiring:
    def __init__(self, *, track_events: bool = False) -> None:
        self._lock = threading.Lock()
        self.pods: dict[str, PodView] = {}
        self._members_changed: dict[str, float] = {}
        self.track_events = track_events
        self._joins: dict[str, float] = {}
        self._leaves: dict[str, tuple[float, str, dict[str, str]]] = {}
        #: (event time, lag) pairs
        self.join_lags: list[tuple[float, float]] = []
        self.leave_lags: list[tuple[float, float]] = []
        self.abandoned_joins = 0
        self.unwired_leaves = 0

    # -- the pod watch ---------------------------------------------------------------------------------
    def seen(self, uid: str, name: str, networks: dict[str, str], ip: str | None, agent_running: bool,
             deleting: bool, t: float) -> None:
        with self._lock:
            pod = self.pods.get(uid)
            if pod is None:
                pod = self.pods[uid] = PodView(uid, name, dict(networks))
                self._touch(pod, t)
            if ip and pod.ip != ip:
                pod.ip = ip
                self._touch(pod, t)
            if agent_running and pod.running_at is None:
                pod.running_at = t
                if self.track_events and pod.alive:
                    self._joins[uid] = t
            if deleting and pod.alive:
                self._leave(pod, t)

    def leaving(self, uid: str, t: float) -> None:
        """The bench is about to ask the API to delete this pod."""
        with self._lock:
            pod = self.pods.get(uid)
            if pod is not None and pod.alive:
                self._leave(pod, t)

    def gone(self, uid: str, t: float) -> None:
        with self._lock:
            pod = self.pods.pop(uid, None)
            if pod is not None and pod.alive:
                self._leave(pod, t)

    def _leave(self, pod: PodView, t: float) -> None:
        pod.leaving_at = t
        self._touch(pod, t)
        if self._joins.pop(pod.uid, None) is not None:
            self.abandoned_joins += 1
        elif self.track_events and pod.ip and pod.running_at is not None:
            self._leaves[pod.uid] = (t, pod.ip, dict(pod.networks))
        elif self.track_events:
            self.unwired_leaves += 1

    def _touch(self, pod: PodView, t: float) -> None:
        for network in pod.networks:
            self._members_changed[network] = max(t, self._members_changed.get(network, 0.0))

    # -- the poller ------------------------------------------------------------------------------------
    def fdb_changed(self, uid: str, t: float, add: list, delete: list, ready: bool) -> None:
        with self._lock:
            pod = self.pods.get(uid)
            if pod is None:
                return
            for dev, ip in add:
                pod.fdb.setdefault(dev, set()).add(ip)
                pod.added_at[(dev, ip)] = t
            for dev, ip in delete:
                pod.fdb.get(dev, set()).discard(ip)
                pod.removed_at[(dev, ip)] = t
            pod.changed_at = t
            pod.known = pod.known or ready

    def known(self, uid: str) -> bool:
        with self._lock:
            pod = self.pods.get(uid)
            return pod is not None and pod.known

    # -- reading ---------------------------------------------------------------------------------------
    def alive(self) -> list[PodView]:
        with self._lock:
            return [p for p in self.pods.values() if p.alive]

    def members(self) -> list[PodView]:
        """Alive pods whose sidecar runs."""
        with self._lock:
            return [p for p in self.pods.values() if p.alive and p.running_at is not None]

    def settled(self) -> list[PodView]:
        """Alive pods whose sidecar runs and whose join, if tracked, is settled (every peer has them)."""
        with self._lock:
            return [p for p in self.pods.values()
                    if p.alive and p.running_at is not None and p.uid not in self._joins]

    def last_running(self) -> float | None:
        """When the last alive pod's sidecar was first seen running (None: none runs)."""
        with self._lock:
            return max((p.running_at for p in self.pods.values() if p.alive and p.running_at is not None),
                       default=None)

    def pending_events(self) -> int:
        with self._lock:
            return len(self._joins) + len(self._leaves)

    def evaluate(self, now: float) -> Count:
        """Compare every alive pod's fdb with its peers; settle the join and leave events that completed."""
        with self._lock:
            alive = [p for p in self.pods.values() if p.alive]
            ips: dict[str, set[str]] = {}
            incomplete: set[str] = set()
            for pod in alive:
                for network in pod.networks:
                    if pod.ip:
                        ips.setdefault(network, set()).add(pod.ip)
                    else:
                        incomplete.add(network)
            wired = 0
            last: float | None = None
            for pod in alive:
                exact = pod.ip is not None and pod.known and all(
                    network not in incomplete and len(pod.fdb.get(dev, ())) == len(ips[network]) - 1
                    and pod.fdb.get(dev, set()) == ips[network] - {pod.ip}
                    for network, dev in pod.networks.items())
                if not exact:
                    pod.wired_since = None
                    continue
                if pod.wired_since is None:
                    pod.wired_since = max([pod.changed_at] + [self._members_changed.get(n, 0.0)
                                                              for n in pod.networks])
                wired += 1
                last = pod.wired_since if last is None else max(last, pod.wired_since)
            if self.track_events:
                self._settle_joins(alive)
                self._settle_leaves(alive)
            return Count(wired, len(alive), last)

    def _settle_joins(self, alive: list[PodView]) -> None:
        for uid, started in list(self._joins.items()):
            pod = self.pods.get(uid)
            if pod is None or pod.ip is None:
                continue
            arrivals = [started]
            for peer in alive:
                if peer is pod or peer.running_at is None or peer.running_at > started:
                    continue  # not a member yet when the pod joined: getting it is that peer's own join
                for network in pod.networks.keys() & peer.networks.keys():
                    dev = peer.networks[network]
                    if not peer.holds(dev, pod.ip):
                        break
                    arrivals.append(peer.added_at.get((dev, pod.ip), started))
                else:
                    continue
                break
            else:
                self.join_lags.append((started, max(arrivals) - started))
                del self._joins[uid]

    def _settle_leaves(self, alive: list[PodView]) -> None:
        for uid, (started, ip, networks) in list(self._leaves.items()):
            removals = [started]
            for peer in alive:
                if peer.uid == uid:
                    continue
                shared = networks.keys() & peer.networks.keys()
                if any(peer.holds(peer.networks[n], ip) for n in shared):
                    break
                removals += [peer.removed_at.get((peer.networks[n], ip), started) for n in shared]
            else:
                self.leave_lags.append((started, max(removals) - started))
                del self._leaves[uid]
