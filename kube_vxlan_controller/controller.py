"""The running controller: endpoints and the leader election at once; the actor tree only while leading.

Start: the endpoints (query, health) and the elector (election.py), which tries to acquire the Lease;
`start()` returns after its first try, so on a cluster where no one else leads, the tree runs by then.
A standby watches the Lease (a hint to try again at once) and serves /healthz, /readyz (ready once it
has read the Lease), /metrics, and answers `inspect`/`list` with who leads.
On acquiring (on the elector's thread): the scheduler, then the actor tree (`tree.ActorTree`: root
supervisor, network and pod supervisors, pod watcher, query actor); every exec is fenced by the Lease (it
must end before the Lease could expire). A root supervisor that gives up sets `fatal`: `run` exits 1.
On losing the Lease (renewals failed for the renew deadline): no exec starts any more, at once, and
`lost` is set: `run` then stops and exits 1, and Kubernetes restarts the process, as a standby.
Stop (SIGTERM/SIGINT, or a test), within about the exec deadline: endpoints close; the tree stops, the
watcher first (no new work), then the supervisors (no restart), pod actors (each finishes the exec in
flight or hits its deadline), network actors and the query actor; then the scheduler — all while the
elector still renews; then the elector stops and releases the Lease, so a standby takes over at once.

Concurrency contract: `start()`/`stop()` are called from one thread (the main thread in `run`); the
tree is started on the elector's thread, under a lock `stop()` takes too, so it starts whole or not at
all; all other work happens in actor threads and the k8s stream threads.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from . import admin
from .election import Elector, Role
from .runtime.board import Board
from .runtime.registry import Registry
from .runtime.scheduler import Scheduler
from .netconfig import NetworkConfig
from .tree import ActorTree, Collaborators
from .k8s import client, configmaps, events, execs, leases, podstatus, pods
from .metrics import Metrics
from .settings import EXEC_LINGER, Settings


class Controller:
    def __init__(self, settings: Settings, *, cluster=None) -> None:
        self.settings = settings
        self.cluster = cluster
        self.fatal = threading.Event()
        #: set when this process led and could not renew its Lease: it must exit
        self.lost = threading.Event()
        self.synced = threading.Event()
        #: pod UIDs of the first complete list: ready once each has had a reconcile pass
        self.first_list: frozenset[str] | None = None
        #: the watcher's pod index, kept here so that it outlives a crashed watcher
        self.pod_index: dict = {}
        #: the network ConfigMap with its last known good entries, also kept here to outlive a watcher
        self.network_config = NetworkConfig(f"{settings.namespace}/{settings.configmap}")
        self.stopping = threading.Event()
        self.board = Board()
        self.metrics = Metrics()
        self.servers: list[admin.Server] = []
        self.scheduler: Scheduler | None = None
        self.tree: ActorTree | None = None
        self.executor = None
        self.elector: Elector | None = None
        self.lease_watch: leases.LeaseWatch | None = None
        #: held while the tree starts and while stop() decides: the tree starts whole or not at all
        self._lock = threading.Lock()
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "Controller":
        s = self.settings
        if self.cluster is None:
            self.cluster = client.connect(s.kubeconfig)
        # Bound before any thread starts, so that an address in use stops nothing half-started.
        if s.admin:
            self.servers.append(admin.Server("query", s.admin, admin.query_routes(
                lambda: self.query, s.exec_deadline + 1, not_leading=self._not_leading), loopback_only=True))
        if s.health:
            self.servers.append(admin.Server("health", s.health, admin.health_routes(
                alive=lambda: not self.fatal.is_set(), ready=self.ready, metrics=self)))
        self.elector = Elector(
            leases.LeaseLock(self.cluster, namespace=s.namespace, name=s.lease_name), identity=s.identity,
            lease_duration=s.lease_duration, renew_deadline=s.renew_deadline, retry_period=s.retry_period,
            on_started_leading=self._lead, on_stopped_leading=self._lose, on_new_leader=self._new_leader)
        self.lease_watch = leases.LeaseWatch(self.cluster, namespace=s.namespace, name=s.lease_name,
                                             on_change=self.elector.wake)
        threading.Thread(target=self.lease_watch.run, name="lease-watch", daemon=True).start()
        for server in self.servers:
            server.start()
        logger.info("leader election on lease {}/{} as {} (lease {}s, renew deadline {:g}s, retry {:g}s)",
                    s.namespace, s.lease_name, s.identity, s.lease_duration, s.renew_deadline, s.retry_period)
        self.elector.start()
        self.elector.first_try.wait(s.renew_deadline)
        return self

    def _lead(self) -> None:
        """The elector acquired the Lease: start the tree (on the elector's thread)."""
        with self._lock:
            if self._closing:
                return
            self.metrics.leader.set(1)
            logger.info("became leader (lease {}/{})", self.settings.namespace, self.settings.lease_name)
            self.lease_watch.stop()  # a leader needs no hint
            self._start_tree()

    def _lose(self) -> None:
        """Renewals failed for the renew deadline: no exec starts any more, from now on; `run` exits."""
        self.stopping.set()
        self.metrics.leader.set(0)
        logger.error("lost leadership: could not renew lease {}/{} for {:g}s; every exec stops, and the process "
                     "exits to come back as a standby", self.settings.namespace, self.settings.lease_name,
                     self.settings.renew_deadline)
        self.lost.set()

    def _new_leader(self, holder: str) -> None:
        self.metrics.leader_transitions.inc()
        if holder != self.settings.identity:
            logger.info("leader is {}", holder or "nobody (the lease is free)")

    def _not_leading(self) -> dict:
        """What the query endpoint answers while this process does not lead."""
        return {"role": self.elector.role.value, "identity": self.settings.identity,
                "leader": self.elector.leader or None,
                "lease": f"{self.settings.namespace}/{self.settings.lease_name}"}

    def _start_tree(self) -> None:
        s, elector = self.settings, self.elector
        self.executor = execs.Executor(self.cluster, deadline=s.exec_deadline,
                                       max_concurrent=s.max_concurrent_execs, observer=self.metrics.observe_exec,
                                       stopping=self.stopping, fence=lambda: elector.horizon() - EXEC_LINGER)
        self.scheduler = Scheduler().start()
        # Events are API calls: made off the actors' threads so that no actor blocks on the API.
        self.event_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="events")
        # The Wired condition is patched off the actors' threads too.
        self.conditions = podstatus.ConditionWriter(self.cluster, self.scheduler)
        self.tree = ActorTree(Collaborators(
            settings=s, scheduler=self.scheduler, executor=self.executor, board=self.board, metrics=self.metrics,
            events=self._record_event, conditions=self.conditions.write, stopping=self.stopping,
            exhausted=self.fatal.set, index=self.pod_index, network_config=self.network_config,
            on_synced=self._on_synced,
            pod_streams=lambda on_event: pods.PodStream(
                self.cluster, label_selector=s.selector, namespace=s.watch_namespace, init_container=s.init_agent,
                agent_container=s.agent, on_event=on_event, observer=self.metrics.watch_observer("pods")),
            configmap_streams=lambda on_change: configmaps.ConfigMapStream(
                self.cluster, name=s.configmap, namespace=s.namespace, on_change=on_change,
                observer=self.metrics.watch_observer("configmap")),
        )).start()
        logger.info("controller started (label {}, annotation {}, ConfigMap {}/{})", s.selector, s.annotation,
                    s.namespace, s.configmap)

    @property
    def registry(self) -> Registry | None:
        return self.tree.registry if self.tree is not None else None

    @property
    def query(self):
        return self.tree.query if self.tree is not None else None

    def exposition(self) -> bytes:
        """/metrics: pods by state are counted from the board at scrape time."""
        self.metrics.pods.clear()
        for status, count in self.board.count_by_status().items():
            self.metrics.pods.labels(status).set(count)
        return self.metrics.exposition()

    @property
    def admin_address(self) -> str | None:
        return next((server.address for server in self.servers if server.name == "query"), None)

    def _record_event(self, pod, *, reason: str, message: str, type: str = "Warning") -> None:
        try:
            self.event_pool.submit(events.record_event, self.cluster, pod, reason=reason, message=message, type=type)
        except RuntimeError:  # the pool is shut down: stopping
            pass

    def _on_synced(self) -> None:
        if self.first_list is None:
            self.first_list = frozenset(self.registry.pods())
        self.synced.set()

    def ready(self) -> bool:
        """/readyz: a standby once it has read the Lease (it is healthy, and a Deployment's rolling update
        waits for Ready pods); the leader once the first pod list was routed and every pod in it has been
        reconciled once."""
        role = self.elector.role if self.elector else Role.STOPPED
        if role is Role.STANDBY:
            return self.elector.observed
        if role is not Role.LEADING or not self.synced.is_set():
            return False
        alive = self.registry.pods()
        for uid in self.first_list & alive.keys():  # pods gone since need no pass
            state = self.board.get(uid)
            if state is None or state.passes == 0:
                return False
        return True

    def stop(self) -> None:
        """Graceful: returns within about the exec deadline plus a few seconds, whatever is hung; releases
        the Lease last, once no exec runs."""
        if self.elector is None:
            return
        with self._lock:
            self._closing = True
        for server in self.servers:
            _quietly("endpoint", server.stop)
        self.servers = []
        led = self.tree is not None
        if led:
            self._stop_tree()
        _quietly("lease watch", self.lease_watch.stop)
        _quietly("elector", self.elector.stop)
        _quietly("lease release", self.elector.release)
        self.metrics.leader.set(0)
        self.elector = None
        if not led:
            logger.info("controller stopped (a standby: nothing ran)")

    def _stop_tree(self) -> None:
        logger.info("controller stopping: watcher, then pod actors, then networks")
        deadline = time.monotonic() + self.settings.exec_deadline + 3
        self.stopping.set()
        pods, networks = self.tree.stop(deadline)
        self.scheduler.stop()
        self.event_pool.shutdown(wait=False, cancel_futures=True)
        self.conditions.close()
        self.tree = None
        logger.info("controller stopped ({} pod actors, {} network actors)", pods, networks)


def _quietly(what: str, stop) -> None:
    """One stop step; a step that fails or times out is logged and the next ones still run."""
    try:
        stop()
    except Exception as error:
        logger.warning("controller stopping: {} did not stop cleanly: {!r}", what, error)
