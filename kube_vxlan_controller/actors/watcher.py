"""PodWatcher: turns the API's pod and ConfigMap streams into messages for pod and network actors.

Two threads of its own block on the API (`k8s` list+watch loops with relist on 410 and backoff); they
only `tell` this actor what they saw, so all routing happens in the actor's thread, one event at a time.
For each pod it resolves the annotation against the current ConfigMap, tells the pod's actor the whole
pod (PodUpdate), and tells each network whether the pod is a member now (MemberUpdate). After each
complete list it also treats pods it knew but that are no longer listed as gone, then tells every
network `Synced`. Bad annotations are logged and recorded as a Kubernetes Event on the pod, once per
distinct error (not on every pod event).

Concurrency contract: works on `known` (last state per pod UID), which the controller owns and hands
to each watcher it starts, so a watcher restarted after a crash still knows which pods existed and
its first list drops those deleted meanwhile; one watcher at a time. Owns the ConfigMap data; never
blocks on other actors (tells only); Events are recorded by the callable it is given (which must not
block); the stream threads stop when the actor stops.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import pykka
from loguru import logger

from .. import options
from ..k8s.pods import PodChanged, PodDeleted, PodsListed
from ..messages import ChildFailed, Member, MemberUpdate, PodGone, PodUpdate, Replay, Synced
from ..model import Pod


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    data: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StreamDied:
    """A stream thread ended although nobody stopped it: the watcher is blind and must be restarted."""

    stream: str
    error: str


@dataclass(frozen=True, slots=True)
class _Known:
    pod: Pod
    networks: tuple[options.NetworkSpec, ...]
    members: Mapping[str, Member | None]
    errors: tuple[str, ...]


class PodWatcher(pykka.ThreadingActor):
    def __init__(self, *, settings, registry, pod_stream_factory, configmap_stream_factory=None,
                 events=None, supervisor=None, on_synced=None, known: dict | None = None) -> None:
        super().__init__()
        self.settings, self.registry = settings, registry
        self.pod_stream_factory = pod_stream_factory
        self.configmap_stream_factory = configmap_stream_factory
        self.events, self.supervisor, self.on_synced = events, supervisor, on_synced
        self.known: dict[str, _Known] = {} if known is None else known
        #: members per network: a network actor whose last member left is retired (pod annotations
        #: may name any number of networks over time; their actors must not pile up).
        self.members_of: dict[str, set[str]] = {}
        for uid, k in self.known.items():
            for network, member in k.members.items():
                if member is not None:
                    self.members_of.setdefault(network, set()).add(uid)
        #: after the first complete list every membership change is whole on its own: networks that
        #: appear later (a new name in a new pod) are synced from their first member on.
        self.synced_once = False
        self.configmap: Mapping[str, str] = {}
        #: pod events wait until the ConfigMap has been read once: a pod resolved without its network
        #: defaults would be set up without its interfaces (and setup happens only once).
        self.configmap_read = configmap_stream_factory is None
        self.held: list = []
        self.stop_event = threading.Event()
        self.streams: list = []
        self.threads: list[threading.Thread] = []

    def on_start(self) -> None:
        tell = self.actor_ref.tell
        if self.configmap_stream_factory is not None:
            # ConfigMap first: pods listed before it is read would resolve against no defaults.
            stream = self.configmap_stream_factory(on_change=lambda data: tell(ConfigChanged(dict(data))))
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
            self.supervisor.tell(ChildFailed("watcher", "pods", repr(exception_value)))

    def on_receive(self, message):
        if isinstance(message, StreamDied):
            # Deliberately outside the try below: this is the crash the supervisor handles.
            raise RuntimeError(f"{message.stream} died: {message.error}")
        try:
            if isinstance(message, (PodsListed, PodChanged, PodDeleted)) and not self.configmap_read:
                self.held.append(message)
            elif isinstance(message, PodsListed):
                self._listed(message.pods)
            elif isinstance(message, PodChanged):
                self._upsert(message.pod)
            elif isinstance(message, PodDeleted):
                self._gone(message.pod.uid)
            elif isinstance(message, ConfigChanged):
                if not self.configmap_read:
                    self.configmap_read = True
                    self.configmap = message.data
                    held, self.held = self.held, []
                    for event in held:
                        self.on_receive(event)
                elif message.data != self.configmap:
                    logger.info("network ConfigMap {}/{}: {} networks", self.settings.namespace,
                                self.settings.configmap, len(message.data))
                    self.configmap = message.data
                    for known in list(self.known.values()):
                        self._upsert(known.pod)
            elif isinstance(message, Replay):
                for known in list(self.known.values()):
                    self._upsert(known.pod)
                self._synced(republish=True)
        except Exception:
            logger.exception("pod watcher: failed to handle {}", type(message).__name__)

    # -- routing ----------------------------------------------------------------------------------

    def _listed(self, pods: tuple[Pod, ...]) -> None:
        listed = {pod.uid for pod in pods}
        for uid in [uid for uid in self.known if uid not in listed]:
            self._gone(uid)
        for pod in pods:
            self._upsert(pod)
        self._synced()

    def _synced(self, republish: bool = False) -> None:
        self.synced_once = True
        for network in self.registry.networks().values():
            network.tell(Synced(republish))
        if self.on_synced is not None:
            self.on_synced()

    def _upsert(self, pod: Pod) -> None:
        previous = self.known.get(pod.uid)
        resolution = options.resolve(pod.annotations.get(self.settings.annotation), self.configmap,
                                     pod_key=pod.key)
        if resolution.errors and (previous is None or previous.errors != resolution.errors):
            for error in resolution.errors:
                logger.error("{}", error)
            if self.events is not None:
                self.events(pod, reason="VxlanNetworkInvalid", message="; ".join(resolution.errors)[:1000])
        member_now = pod.agent_running and bool(pod.ip) and not pod.deleting
        members = {spec.network: (Member(pod.uid, pod.key, pod.ip, spec.name) if member_now else None)
                   for spec in resolution.networks}
        if previous is None:
            logger.info("pod {}: seen ({}, ip {}, networks {})", pod.key, pod.phase or "no phase",
                        pod.ip or "none", ", ".join(spec.network for spec in resolution.networks) or "none")
        self.registry.pod(pod.uid, pod.key).tell(PodUpdate(pod, resolution.networks))
        old_members = previous.members if previous is not None else {}
        for network in old_members.keys() - members.keys():
            if old_members[network] is not None:
                self._tell_network(network, MemberUpdate(pod.uid, None))
        for network, member in members.items():
            if old_members.get(network) != member:
                self._tell_network(network, MemberUpdate(pod.uid, member))
        self.known[pod.uid] = _Known(pod, resolution.networks, members, resolution.errors)

    def _tell_network(self, network: str, message: MemberUpdate) -> None:
        ref = self.registry.network(network)
        ref.tell(message)
        if self.synced_once:
            ref.tell(Synced())
        members = self.members_of.setdefault(network, set())
        if message.member is not None:
            members.add(message.uid)
        else:
            members.discard(message.uid)
            if not members:
                del self.members_of[network]
                self.registry.retire_network(network)

    def _gone(self, uid: str) -> None:
        known = self.known.pop(uid, None)
        if known is None:
            return
        logger.info("pod {}: gone", known.pod.key)
        for network, member in known.members.items():
            if member is not None:
                self._tell_network(network, MemberUpdate(uid, None))
        ref = self.registry.forget_pod(uid)
        if ref is not None:
            try:
                ref.tell(PodGone(uid))
            except pykka.ActorDeadError:
                pass
