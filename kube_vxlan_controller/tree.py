"""The actor tree: built in one place, in one order, stopped in the reverse order.

    root            Supervisor: restarts its children; beyond its intensity the process exits 1
     ├── watcher    PodWatcher (restarted at once, listing after a backoff; the pod index and the network
     │              config it works on outlive it, owned by the controller)
     ├── networks   Supervisor → NetworkActor × network name (a crashed one is rebuilt by the watcher from
     │              its pod index: `Rebuild`)
     ├── pods       Supervisor → PodActor × pod UID (a crashed one gets its pod and its peers again from the
     │              watcher and its networks: `Reroute`)
     └── query      QueryActor

Beside the tree, not actors: the scheduler (every delayed tell, the controller's), the registry (who runs),
the board (what the query actor shows). When the pods or networks level gives up, the root restarts that level: its
actors are stopped, a fresh supervisor starts, and the watcher rebuilds every child (`RerouteAll`,
`RebuildAll`). Every level has the same restart intensity (`--restart-intensity` restarts within
`--restart-period` seconds).

Concurrency contract: `start()` and `stop()` are called by the controller, under its lock; the restart
methods run on the root supervisor's thread (stopping a level waits for its actors, at most the exec
deadline). Starting an actor and telling one never block.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import pykka
from loguru import logger

from .actors.network import NetworkActor
from .actors.pod import PodActor
from .actors.query import QueryActor
from .runtime.registry import Registry
from .runtime.scheduler import Scheduler
from .actors.supervisor import Supervisor
from .actors.watcher import PodWatcher
from .backoff import Backoff
from .messages import Rebuild, RebuildAll, Reroute, RerouteAll
from .netconfig import NetworkConfig
from .settings import Settings
from .supervision import Intensity


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What the actors are handed, besides each other."""

    settings: Settings
    #: every delayed tell (started and stopped by the controller: the condition writer uses it too)
    scheduler: Scheduler
    #: runs commands in pods (`k8s.execs.Executor`)
    executor: object
    #: posts what the query actor shows (`runtime.board.Board`)
    board: object
    metrics: object
    #: `events(pod, reason=, message=, type=)`: records a Kubernetes Event; must not block
    events: Callable
    #: `conditions(pod, condition, transition)`: writes the Wired condition; must not block
    conditions: Callable
    #: set when the controller stops: no exec starts any more
    stopping: threading.Event
    #: called when the root gives up: the process exits 1
    exhausted: Callable[[], None]
    #: the watcher's pod index and network config, owned by the controller to outlive a watcher
    index: dict
    network_config: NetworkConfig
    #: called by the watcher after each complete list
    on_synced: Callable[[], None]
    #: `pod_streams(on_event)` / `configmap_streams(on_change)`: the k8s list+watch loops the watcher runs
    pod_streams: Callable
    configmap_streams: Callable | None


class ActorTree:
    def __init__(self, c: Collaborators) -> None:
        self.c = c
        self.scheduler = c.scheduler
        self.registry: Registry | None = None
        self.root: pykka.ActorRef | None = None
        self.networks: pykka.ActorRef | None = None
        self.pods: pykka.ActorRef | None = None
        self.watcher: pykka.ActorRef | None = None
        self.query: pykka.ActorRef | None = None
        #: how long a restarted watcher waits before it lists again
        self.watcher_backoff = Backoff(initial=0.2, cap=5.0)

    # -- start and stop ---------------------------------------------------------------------------

    def start(self) -> "ActorTree":
        self.registry = Registry(pod_factory=self._start_pod, network_factory=self._start_network)
        self.root = Supervisor.start("root", restart={"watcher": self._restart_watcher, "pods": self._restart_pods,
                                                      "networks": self._restart_networks,
                                                      "query": self._restart_query},
                                     intensity=self._intensity(), exhausted=self.c.exhausted, metrics=self.c.metrics)
        self.networks = self._level("networks", "network", lambda name: self._tell_watcher(Rebuild(name)))
        self.pods = self._level("pods", "pod", lambda uid: self._tell_watcher(Reroute(uid)))
        self.watcher = self._start_watcher(start_after=0.0)
        self.query = self._start_query()
        return self

    def stop(self, deadline: float) -> tuple[int, int]:
        """The watcher first (no new work), the root (no restart), then pod actors (each finishes the
        exec in flight or hits its deadline), networks, the query actor. Returns how many pod and network
        actors were stopped."""
        for ref in (self.watcher, self.root, self.pods, self.networks):
            _stop(ref, timeout=10)
        pods = self.registry.stop_pods(deadline)
        networks = self.registry.stop_networks(deadline)
        _stop(self.query, timeout=5)
        return pods, networks

    # -- children ---------------------------------------------------------------------------------

    def _intensity(self) -> Intensity:
        s = self.c.settings
        return Intensity(s.restart_intensity, s.restart_period)

    def _level(self, name: str, child: str, restart: Callable[[str], None]) -> pykka.ActorRef:
        return Supervisor.start(name, restart={child: restart}, intensity=self._intensity(), parent=self.root,
                                metrics=self.c.metrics)

    def _start_pod(self, uid: str, key: str) -> pykka.ActorRef:
        c = self.c
        return PodActor.start(uid, key, executor=c.executor, settings=c.settings, scheduler=self.scheduler,
                              events=c.events, conditions=c.conditions, supervisor=self.pods, board=c.board,
                              metrics=c.metrics, stopping=c.stopping)

    def _start_network(self, name: str, synced: bool) -> pykka.ActorRef:
        return NetworkActor.start(name, registry=self.registry, supervisor=self.networks, metrics=self.c.metrics,
                                  synced=synced, scheduler=self.scheduler, hold=self.c.settings.hold)

    def _start_watcher(self, start_after: float) -> pykka.ActorRef:
        c = self.c
        return PodWatcher.start(settings=c.settings, registry=self.registry, events=c.events,
                                conditions=c.conditions, supervisor=self.root,
                                on_synced=c.on_synced, index=c.index, config=c.network_config, metrics=c.metrics,
                                scheduler=self.scheduler, start_after=start_after, pod_stream_factory=c.pod_streams,
                                configmap_stream_factory=c.configmap_streams)

    def _start_query(self) -> pykka.ActorRef:
        return QueryActor.start(registry=self.registry, board=self.c.board, deadline=self.c.settings.exec_deadline + 1,
                                supervisor=self.root)

    # -- restarts (on the root's thread) ---------------------------------------------------------

    def _tell_watcher(self, message) -> None:
        """A restart done through the watcher; a watcher that crashed meanwhile is being restarted, and its
        successor's first list routes every pod anyway."""
        try:
            self.watcher.tell(message)
        except pykka.ActorDeadError:
            pass

    def _restart_watcher(self, _key: str) -> None:
        self.watcher = self._start_watcher(start_after=self.watcher_backoff.next())

    def _restart_query(self, _key: str) -> None:
        self.query = self._start_query()

    def _restart_pods(self, _key: str) -> None:
        old, self.pods = self.pods, self._level("pods", "pod", lambda uid: self._tell_watcher(Reroute(uid)))
        _stop(old, timeout=5)
        stopped = self.registry.stop_pods(time.monotonic() + self.c.settings.exec_deadline + 3)
        logger.warning("pod level restarted: {} pod actors stopped; the watcher starts each again", stopped)
        self._tell_watcher(RerouteAll())

    def _restart_networks(self, _key: str) -> None:
        old, self.networks = self.networks, self._level("networks", "network",
                                                        lambda name: self._tell_watcher(Rebuild(name)))
        _stop(old, timeout=5)
        stopped = self.registry.stop_networks(time.monotonic() + 5)
        logger.warning("network level restarted: {} network actors stopped; the watcher rebuilds each", stopped)
        self._tell_watcher(RebuildAll())


def _stop(ref: pykka.ActorRef | None, timeout: float) -> None:
    if ref is None:
        return
    try:
        ref.stop(timeout=timeout)
    except (pykka.ActorDeadError, pykka.Timeout):
        pass
