"""PodWatcher: routes the API's pod and ConfigMap streams to pod and network actors; keeps no membership.

Two threads of its own block on the API (`k8s` list+watch loops with relist on 410 and backoff); they
only `tell` this actor what they saw, so all routing happens in the actor's thread, one event at a time.
For each pod it resolves the annotation against the current ConfigMap and tells the whole pod
(`PodUpdate`) to the pod's actor and to the actor of every network the pod names or named until now;
whether the pod is a member is each network actor's business. A pod whose opt-in label is not "true"
(pods are selected by the label's existence, as the original did) is routed nowhere: a member whose label
changes leaves its networks as if gone. After each complete list it treats pods it knew but that are no
longer listed as gone, then tells every network `Synced`. Bad annotations are logged and recorded as a
Kubernetes Event on the pod, once per distinct error (not on every pod event).

Pods it will not wire are told why (`eligibility.causes`: the label, a missing agent container or
NET_ADMIN, no networks annotation, no valid network): each cause is logged and recorded as an Event once
per pod, not on every pod event, relist or resync; a cause that goes away and comes back is told again.
A pod whose label is not "true" has no pod actor to write its Wired condition, so the watcher writes it
(False, LabelNotTrue) where a readiness gate waits for it or a condition is there already (a member
that left), and only when the API holds another; a routed pod's own actor judges it from the same causes
(the first that blocks wiring, `eligibility.blocking`).

Its pod index (pod UID → the pod and its networks as last routed, and the causes told) is routing state:
which actors to tell (pods whose label is not "true" are in it too, routed nowhere, for what was told).
The controller owns it and hands it to each watcher it starts, so a watcher restarted after a crash
still knows which pods existed and what it told them, and its first list drops those deleted meanwhile.
From it the watcher rebuilds a restarted network actor (`Rebuild`: every pod naming the network, then
`Synced`) and a restarted pod actor (`Reroute`: its pod, and its networks resend their snapshots).

Concurrency contract: one watcher at a time works on the index. Owns the ConfigMap data; never blocks
on other actors (tells only); Events and conditions are written by the callables it is given (which must
not block); the stream threads stop when the actor stops.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import pykka
from loguru import logger

from .. import eligibility, options
from ..netconfig import NetworkConfig
from .supervisor import child_failed
from ..messages import (Begin, ConfigChanged, PodChanged, PodDeleted, PodRemoved, PodsListed, PodUpdate, Rebuild,
                        RebuildAll, Reroute, RerouteAll, Resend, StreamDied, Synced)
from ..model import Pod


@dataclass(frozen=True, slots=True)
class Routed:
    """One pod as last routed: the pod, the networks it resolved to, the annotation errors reported, the
    reasons the controller will not wire it (each told)."""

    pod: Pod
    networks: tuple[options.NetworkSpec, ...]
    errors: tuple[str, ...]
    #: networks it resolved against their last known good entry, as it was told (an Event once each)
    kept: frozenset[str] = frozenset()
    causes: tuple[eligibility.Cause, ...] = ()


class PodWatcher(pykka.ThreadingActor):
    def __init__(self, *, settings, registry, pod_stream_factory, configmap_stream_factory=None,
                 events=None, conditions=None, supervisor=None, on_synced=None, index: dict | None = None,
                 config: NetworkConfig | None = None, metrics=None, scheduler=None,
                 start_after: float = 0.0) -> None:
        super().__init__()
        self.settings, self.registry = settings, registry
        self.pod_stream_factory = pod_stream_factory
        self.configmap_stream_factory = configmap_stream_factory
        self.events, self.supervisor, self.on_synced = events, supervisor, on_synced
        #: `conditions(pod, condition, transition)`: writes the Wired condition of a pod routed nowhere
        self.conditions = conditions
        self.index: dict[str, Routed] = {} if index is None else index
        #: after the first complete list every network actor started may publish from its first pod on
        self.synced_once = False
        #: the ConfigMap's data with each network's last known good entry (owned by the controller)
        self.config = config if config is not None else NetworkConfig(f"{settings.namespace}/{settings.configmap}")
        self.metrics = metrics
        #: a restarted watcher starts its streams this many seconds late (through the scheduler)
        self.scheduler, self.start_after = scheduler, start_after
        #: new pods that name a network whose entry is kept: not routed until the entry is back (uid → pod)
        self.waiting: dict[str, Pod] = {}
        #: pod events wait until the ConfigMap has been read once: a pod resolved without its network
        #: defaults would be set up without its interfaces (and setup happens only once).
        self.configmap_read = configmap_stream_factory is None
        self.held: list = []
        self.stop_event = threading.Event()
        self.streams: list = []
        self.threads: list[threading.Thread] = []

    def on_start(self) -> None:
        if self.start_after > 0:  # a restarted watcher: not at once, lest a failing stream spin
            self.scheduler.tell_later(self.start_after, self.actor_ref, Begin())
        else:
            self._begin()

    def _begin(self) -> None:
        tell = self.actor_ref.tell
        if self.configmap_stream_factory is not None:
            # ConfigMap first: pods listed before it is read would resolve against no defaults.
            stream = self.configmap_stream_factory(on_change=lambda data: tell(ConfigChanged(data)))
            self._spawn("configmap-stream", stream)
        self._spawn("pod-stream", self.pod_stream_factory(on_event=tell))

    def _spawn(self, name: str, stream) -> None:
        self.streams.append(stream)

        def run() -> None:
            try:
                stream.run(self.stop_event)
                error = "ended"
            except Exception as exc:
                error = repr(exc)
            if not self.stop_event.is_set():
                try:
                    self.actor_ref.tell(StreamDied(name, error))
                except pykka.ActorDeadError:
                    pass

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def on_stop(self) -> None:
        self.stop_event.set()
        for stream in self.streams:
            stream.stop()
        for thread in self.threads:
            thread.join(timeout=5)
        logger.info("pod watcher stopped")

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.on_stop()
        if self.supervisor is not None:
            self.supervisor.tell(child_failed("watcher", "pods", exception_value, traceback))

    def on_receive(self, message):
        if isinstance(message, StreamDied):
            raise RuntimeError(f"{message.stream} died: {message.error}")
        if isinstance(message, (PodsListed, PodChanged, PodDeleted)) and not self.configmap_read:
            self.held.append(message)
        elif isinstance(message, PodsListed):
            self._listed(message.pods)
        elif isinstance(message, PodChanged):
            self._route(message.pod)
        elif isinstance(message, PodDeleted):
            self._gone(message.pod.uid)
        elif isinstance(message, ConfigChanged):
            self._configmap(message.data)
        elif isinstance(message, Rebuild):
            self._rebuild(message.network)
        elif isinstance(message, Reroute):
            self._reroute(message.uid)
        elif isinstance(message, RerouteAll):
            for uid in list(self.index):
                self._reroute(uid)
        elif isinstance(message, RebuildAll):
            for network in sorted({spec.network for r in self.index.values() for spec in r.networks}):
                self._rebuild(network)
        elif isinstance(message, Begin):
            self._begin()

    # -- routing ----------------------------------------------------------------------------------

    def _configmap(self, data: Mapping[str, str]) -> None:
        if self.configmap_read and dict(data) == dict(self.config.data):
            return
        for network, why in self.config.update(data).items():
            if why is None:
                logger.info("network {}: its entry in {} is valid again", network, self.config.where)
            else:
                logger.warning("{}; new pods naming it wait until it is restored", self.config.describe(network))
        if self.metrics is not None:
            self.metrics.networks_last_known_good.set(len(self.config.kept))
        if not self.configmap_read:
            self.configmap_read = True
            held, self.held = self.held, []
            for event in held:
                self.on_receive(event)
            return
        logger.info("network ConfigMap {}: {} networks", self.config.where, len(data))
        waiting, self.waiting = list(self.waiting.values()), {}
        for pod in [routed.pod for routed in self.index.values()] + waiting:
            self._route(pod)

    def _listed(self, pods: tuple[Pod, ...]) -> None:
        listed = {pod.uid for pod in pods}
        for uid in [uid for uid in [*self.index, *self.waiting] if uid not in listed]:
            self._gone(uid)
        for pod in pods:
            self._route(pod)
        self.synced_once = True
        for network in self.registry.networks().values():
            network.tell(Synced())
        if self.on_synced is not None:
            self.on_synced()

    def _route(self, pod: Pod) -> None:
        previous = self.index.get(pod.uid)
        told = previous.causes if previous is not None else ()
        if previous is not None and not eligibility.opted_in(previous.pod, self.settings):
            previous = None  # routed nowhere until now (its label was not "true"): new to its networks
        annotation = pod.annotations.get(self.settings.annotation)
        kept = self.config.kept_among(options.network_names(annotation))
        had = {spec.network for spec in previous.networks} if previous is not None else set()
        resolution = options.with_underlays(options.resolve(annotation, self.config.for_pod(had), pod_key=pod.key),
                                            pod.addresses, pod_key=pod.key)
        # Judged with the kept entries: a pod that waits for one is told so (`_wait`), not that it is invalid.
        judged = resolution if kept <= had else options.with_underlays(
            options.resolve(annotation, self.config.for_pod(had | kept), pod_key=pod.key), pod.addresses,
            pod_key=pod.key)
        causes = eligibility.causes(pod, judged, self.settings)
        if not eligibility.opted_in(pod, self.settings):
            self._tell(pod, causes, told)
            if previous is not None:
                logger.info("pod {}: label {} is no longer \"true\": leaving", pod.key, self.settings.label)
                self._gone(pod.uid)
            self.waiting.pop(pod.uid, None)
            self._unwired(pod, causes[0])  # the label's, which blocks
            self.index[pod.uid] = Routed(pod, (), (), causes=causes)
            return
        if kept and previous is None:
            self._wait(pod, kept)
            return
        self._tell(pod, causes, told)
        kept &= had
        told_kept = previous.kept if previous is not None else frozenset()
        for network in sorted(kept - told_kept):
            if self.events is not None:
                self.events(pod, reason="VxlanNetworkLastKnownGood", message=self.config.describe(network))
        if resolution.errors and (previous is None or previous.errors != resolution.errors):
            for error in resolution.errors:
                logger.error("{}", error)
            if self.events is not None:
                self.events(pod, reason="VxlanNetworkInvalid", message="; ".join(resolution.errors)[:1000])
        if previous is None:
            logger.info("pod {}: seen ({}, ip {}, networks {})", pod.key, pod.phase or "no phase",
                        pod.ip or "none", ", ".join(spec.network for spec in resolution.networks) or "none")
        update = PodUpdate(pod, resolution.networks, resolution.errors, causes)
        self.registry.pod(pod.uid, pod.key).tell(update)
        named = {spec.network for spec in resolution.networks}
        if previous is not None:
            named |= {spec.network for spec in previous.networks}
        for network in sorted(named):
            self.registry.tell_network(network, update, synced=self.synced_once)
        self.index[pod.uid] = Routed(pod, resolution.networks, resolution.errors, kept, causes)

    def _tell(self, pod: Pod, causes: tuple[eligibility.Cause, ...], told: tuple[eligibility.Cause, ...]) -> None:
        """Log and record an Event for each cause not told yet (`told`: those that held at the last event)."""
        old = {cause.reason for cause in told}
        for cause in causes:
            if cause.reason not in old:
                logger.warning("pod {}: {}", pod.key, cause.message)
                if self.events is not None:
                    self.events(pod, reason=cause.event_reason, message=cause.message)

    def _unwired(self, pod: Pod, cause: eligibility.Cause) -> None:
        """The Wired condition of a pod routed nowhere (see the module docstring)."""
        if self.conditions is None or pod.deleting or not (pod.gated or pod.wired is not None):
            return
        if pod.wired != cause.condition:
            self.conditions(pod, cause.condition, pod.wired is None or pod.wired.status)

    def _wait(self, pod: Pod, kept: frozenset[str]) -> None:
        """A new pod names networks whose entry is kept: it is not set up with defaults that are gone."""
        if pod.uid not in self.waiting:
            message = "; ".join(f"network {network}: {self.config.kept[network]}: this pod waits until it is "
                                "restored" for network in sorted(kept))
            logger.warning("pod {}: {}", pod.key, message)
            if self.events is not None:
                self.events(pod, reason="VxlanNetworkConfigMissing", message=message[:1000])
        self.waiting[pod.uid] = pod

    def _gone(self, uid: str) -> None:
        self.waiting.pop(uid, None)
        routed = self.index.pop(uid, None)
        if routed is None:
            return
        logger.info("pod {}: gone", routed.pod.key)
        for spec in routed.networks:
            self.registry.tell_network(spec.network, PodRemoved(uid), synced=self.synced_once)
        ref = self.registry.forget_pod(uid)
        if ref is not None:
            try:
                ref.tell(PodRemoved(uid))
            except pykka.ActorDeadError:
                pass

    def _rebuild(self, network: str) -> None:
        """A network actor crashed: its successor learns every pod naming the network, then `Synced`."""
        logger.info("network {}: rebuilding its membership from the pod index", network)
        routed = [r for r in self.index.values() if any(spec.network == network for spec in r.networks)]
        for r in routed:
            self.registry.tell_network(network, PodUpdate(r.pod, r.networks), synced=False)
        if self.synced_once and routed:
            self.registry.tell_network(network, Synced(), synced=False)

    def _reroute(self, uid: str) -> None:
        """A pod actor crashed: its successor gets its pod, and its networks send it their snapshots."""
        routed = self.index.get(uid)
        if routed is None or not eligibility.opted_in(routed.pod, self.settings):
            return
        self.registry.pod(uid, routed.pod.key).tell(PodUpdate(routed.pod, routed.networks, routed.errors,
                                                              routed.causes))
        for spec in routed.networks:
            self.registry.tell_network(spec.network, Resend(uid), synced=self.synced_once)
