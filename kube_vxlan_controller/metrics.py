"""Prometheus metrics, served on /metrics.

One registry per controller (not the process-global default), so tests that run several controllers
in one interpreter do not collide; it carries what the default registry would: the process metrics
(`process_*`: CPU, memory, open files, start time), `python_info` and the garbage collector's, and
`kvc_build_info{version}`. Everything here is thread-safe (prometheus-client locks internally).
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from kube_vxlan_controller import __version__


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(GC_COLLECTOR)
        Info("kvc_build", "The controller's release", registry=r).info({"version": __version__})
        self.execs = Counter("kvc_execs", "Execs in pods, by outcome (ok: an exit code the caller expected, "
                             "nonzero: another, timeout, gone, unavailable, error)",
                             ["outcome"], registry=r)
        self.exec_seconds = Histogram("kvc_exec_seconds", "Exec latency in seconds, by outcome", ["outcome"],
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=r)
        self.pods = Gauge("kvc_pods", "Pods known to the controller, by state", ["state"], registry=r)
        self.members = Gauge("kvc_network_members", "Members per network", ["network"], registry=r)
        self.reconcile_errors = Counter("kvc_reconcile_errors", "Failed pod reconciles, by kind", ["kind"],
                                        registry=r)
        self.watch_restarts = Counter("kvc_watch_restarts", "List/watch restarts, by stream and cause",
                                      ["stream", "cause"], registry=r)
        self.interfaces_differing = Gauge(
            "kvc_interfaces_differing", "Member interfaces whose kernel parameters differ from their network's "
            "(as last read or written), by network: nonzero for long means the controller cannot converge them",
            ["network"], registry=r)
        self.networks_last_known_good = Gauge(
            "kvc_networks_last_known_good", "Networks whose running members keep the last good options because "
            "the network ConfigMap lost or broke their entry", registry=r)
        self.sessions_open = Gauge("kvc_sessions_open", "Sessions (long-lived execs into sidecar agents) open now",
                                   registry=r)
        self.session_requests = Counter("kvc_session_requests", "Requests answered over sessions (each one an "
                                        "exec saved)", registry=r)
        self.session_ends = Counter("kvc_session_ends", "Sessions that ended, by reason (exited, closed, broke, "
                                    "timeout, unreadable; closed by us: the pod went or the controller stops; fenced: the "
                                    "leader's fence passed)",
                                    ["reason"], registry=r)
        self.session_fallbacks = Counter("kvc_session_fallbacks", "Pods that could not keep a session and went "
                                         "back to one exec per request until their next resync", registry=r)
        self.actor_restarts = Counter("kvc_actor_restarts", "Crashed actors restarted by their supervisor, by kind "
                                      "(pod, network, watcher, query; pods, networks: a whole level)", ["kind"],
                                      registry=r)
        self.leader = Gauge("kvc_leader", "1 while this process leads (holds the Lease), else 0", registry=r)
        self.leader_transitions = Counter("kvc_leader_transitions", "Changes of the Lease's holder this process "
                                          "saw (to or from itself, to nobody on a release)", registry=r)

    def drop_members(self, network: str) -> None:
        """A retired network's gauge goes (its only writer was its network actor)."""
        try:
            self.members.remove(network)
        except KeyError:
            pass

    def observe_exec(self, outcome: str, seconds: float) -> None:
        self.execs.labels(outcome).inc()
        self.exec_seconds.labels(outcome).observe(seconds)

    def watch_observer(self, stream: str):
        def observe(outcome: str) -> None:
            if outcome != "listed":
                self.watch_restarts.labels(stream, outcome).inc()
        return observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
