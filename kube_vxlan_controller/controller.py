"""The running controller: builds the actor tree, starts it in dependency order, stops it in reverse.

Start: scheduler → registry → supervisor (which starts the pod watcher) → query actor → endpoints.
Stop (SIGTERM/SIGINT, or a test), within about the exec deadline: endpoints close; the supervisor
stops, stopping the watcher first (no new work, no restart); pod actors start no new exec and stop
(each finishes the exec in flight or hits its deadline); then network actors, the query actor, the
scheduler.

Concurrency contract: `start()`/`stop()` are called from one thread (the main thread in `run`); all
other work happens in actor threads and the k8s stream threads.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from . import admin
from .actors.board import Board
from .actors.network import NetworkActor
from .actors.pod import PodActor
from .actors.query import QueryActor
from .actors.registry import Registry
from .actors.scheduler import Scheduler
from .actors.supervisor import Supervisor
from .actors.watcher import PodWatcher
from .k8s import client, configmaps, events, execs, podstatus, pods
from .metrics import Metrics
from .settings import Settings


class Controller:
    def __init__(self, settings: Settings, *, cluster=None) -> None:
        self.settings = settings
        self.cluster = cluster
        self.fatal = threading.Event()
        self.synced = threading.Event()
        #: pod UIDs of the first complete list: ready once each has had a reconcile pass
        self.first_list: frozenset[str] | None = None
        #: the watcher's pod index, kept here so that it outlives a crashed watcher
        self.pod_index: dict = {}
        self.stopping = threading.Event()
        self.board = Board()
        self.metrics = Metrics()
        self.servers: list[admin.Server] = []
        self.query = None
        self.scheduler: Scheduler | None = None
        self.registry: Registry | None = None
        self.supervisor = None
        self.executor = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "Controller":
        s = self.settings
        if self.cluster is None:
            self.cluster = client.connect(s.kubeconfig)
        self.executor = execs.Executor(self.cluster, deadline=s.exec_deadline,
                                       max_concurrent=s.max_concurrent_execs, observer=self.metrics.observe_exec,
                                       stopping=self.stopping)
        self.scheduler = Scheduler().start()
        # Events are API calls: made off the actors' threads so that no actor blocks on the API.
        self.event_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="events")
        record = self._record_event
        # The Wired condition is patched off the actors' threads too.
        self.conditions = podstatus.ConditionWriter(self.cluster, self.scheduler)
        self.registry = Registry(
            pod_factory=lambda uid, key: PodActor.start(
                uid, key, executor=self.executor, settings=s, scheduler=self.scheduler, events=record,
                conditions=self.conditions.write, supervisor=self.supervisor, board=self.board,
                metrics=self.metrics, stopping=self.stopping),
            network_factory=lambda name, synced: NetworkActor.start(
                name, registry=self.registry, supervisor=self.supervisor, metrics=self.metrics, synced=synced,
                scheduler=self.scheduler, hold=s.hold),
        )
        self.supervisor = Supervisor.start(scheduler=self.scheduler, start_watcher=self._start_watcher,
                                           fatal=self.fatal)
        self.supervisor.proxy().start_children().get(timeout=10)
        self.query = QueryActor.start(registry=self.registry, board=self.board, deadline=s.exec_deadline + 1)
        if s.admin:
            self.servers.append(admin.Server("query", s.admin, admin.query_routes(self.query, s.exec_deadline + 1),
                                             loopback_only=True).start())
        if s.health:
            self.servers.append(admin.Server("health", s.health, admin.health_routes(
                alive=lambda: not self.fatal.is_set(), ready=self.ready, metrics=self)).start())
        logger.info("controller started (label {}, annotation {}, ConfigMap {}/{})", s.selector, s.annotation,
                    s.namespace, s.configmap)
        return self

    def _start_watcher(self, supervisor):
        """Called by the supervisor, at start and on restarts."""
        s = self.settings
        return PodWatcher.start(
            settings=s, registry=self.registry, events=self._record_event,
            supervisor=supervisor, on_synced=self._on_synced, index=self.pod_index,
            pod_stream_factory=lambda on_event: pods.PodStream(
                self.cluster, label_selector=s.selector, namespace=s.watch_namespace,
                init_container=s.init_agent, agent_container=s.agent, on_event=on_event,
                observer=self.metrics.watch_observer("pods")),
            configmap_stream_factory=lambda on_change: configmaps.ConfigMapStream(
                self.cluster, name=s.configmap, namespace=s.namespace, on_change=on_change,
                observer=self.metrics.watch_observer("configmap")),
        )

    def exposition(self) -> bytes:
        """/metrics: pods by state are counted from the board at scrape time."""
        self.metrics.pods.clear()
        for status, count in self.board.count_by_status().items():
            self.metrics.pods.labels(status).set(count)
        return self.metrics.exposition()

    @property
    def admin_address(self) -> str | None:
        return next((server.address for server in self.servers if server.name == "query"), None)

    def _record_event(self, pod, *, reason: str, message: str) -> None:
        try:
            self.event_pool.submit(events.record_event, self.cluster, pod, reason=reason, message=message)
        except RuntimeError:  # the pool is shut down: stopping
            pass

    def _on_synced(self) -> None:
        if self.first_list is None:
            self.first_list = frozenset(self.registry.pods())
        self.synced.set()

    def ready(self) -> bool:
        """/readyz: the first pod list was routed and every pod in it has been reconciled once."""
        if not self.synced.is_set():
            return False
        alive = self.registry.pods()
        for uid in self.first_list & alive.keys():  # pods gone since need no pass
            state = self.board.get(uid)
            if state is None or state.passes == 0:
                return False
        return True

    def stop(self) -> None:
        """Graceful: returns within about the exec deadline plus a few seconds, whatever is hung."""
        if self.supervisor is None:
            return
        logger.info("controller stopping: watcher, then pod actors, then networks")
        deadline = time.monotonic() + self.settings.exec_deadline + 3
        self.stopping.set()
        for server in self.servers:
            _quietly("endpoint", server.stop)
        # The supervisor stops its watcher first (no new work), and can restart nothing after that.
        _quietly("supervisor", lambda: self.supervisor.stop(timeout=10))
        pods, networks = self.registry.stop_all(deadline)
        _quietly("query actor", lambda: self.query.stop(timeout=5))
        self.scheduler.stop()
        self.event_pool.shutdown(wait=False, cancel_futures=True)
        self.conditions.close()
        self.supervisor = None
        logger.info("controller stopped ({} pod actors, {} network actors)", pods, networks)


def _quietly(what: str, stop) -> None:
    """One stop step; a step that fails or times out is logged and the next ones still run."""
    try:
        stop()
    except Exception as error:
        logger.warning("controller stopping: {} did not stop cleanly: {!r}", what, error)
