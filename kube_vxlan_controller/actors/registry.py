"""Who is running: the pod actors by pod UID and the network actors by network name.

Owned by the controller so that it outlives any one actor. Concurrency contract: a plain object behind
one lock, never held while an actor starts or stops for longer than pykka's start (sub-millisecond); any
thread may call it. A dead actor found here is replaced on the next `pod()`/`network()` call.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable

import pykka

from ..messages import Retire


class Registry:
    def __init__(self, *, pod_factory: Callable[[str, str], pykka.ActorRef],
                 network_factory: Callable[[str, int], pykka.ActorRef]) -> None:
        self._pod_factory = pod_factory
        self._network_factory = network_factory
        self._pods: dict[str, pykka.ActorRef] = {}
        self._networks: dict[str, pykka.ActorRef] = {}
        self._lock = threading.Lock()
        #: each network actor started gets the next number (see `Snapshot.generation`)
        self._generations = itertools.count(1)

    def pod(self, uid: str, pod_key: str) -> pykka.ActorRef:
        with self._lock:
            ref = self._pods.get(uid)
            if ref is None or not ref.is_alive():
                ref = self._pods[uid] = self._pod_factory(uid, pod_key)
            return ref

    def existing_pod(self, uid: str) -> pykka.ActorRef | None:
        with self._lock:
            return self._pods.get(uid)

    def network(self, name: str) -> pykka.ActorRef:
        with self._lock:
            ref = self._networks.get(name)
            if ref is None or not ref.is_alive():
                ref = self._networks[name] = self._network_factory(name, next(self._generations))
            return ref

    def forget_pod(self, uid: str) -> pykka.ActorRef | None:
        with self._lock:
            return self._pods.pop(uid, None)

    def retire_network(self, name: str) -> None:
        """A network with no members left: its actor publishes what is pending and stops (`Retire`
        comes after every message already sent to it); the next member of that name starts a new one."""
        with self._lock:
            ref = self._networks.pop(name, None)
        if ref is not None:
            try:
                ref.tell(Retire())
            except pykka.ActorDeadError:
                pass

    def pods(self) -> dict[str, pykka.ActorRef]:
        with self._lock:
            return dict(self._pods)

    def networks(self) -> dict[str, pykka.ActorRef]:
        with self._lock:
            return dict(self._networks)

    def stop_all(self, deadline: float) -> tuple[int, int]:
        """Stop pod actors first (they may be mid-exec), then the networks that feed them, all within
        one `deadline` (a time.monotonic() value). Returns how many of each were stopped."""
        with self._lock:
            pods, networks = list(self._pods.values()), list(self._networks.values())
            self._pods.clear()
            self._networks.clear()
        for group in (pods, networks):
            futures = []
            for ref in group:
                try:
                    futures.append(ref.stop(block=False))
                except pykka.ActorDeadError:
                    pass
            for future in futures:
                try:
                    future.get(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # stopped already, or stuck past the deadline: nothing more to do
                    pass
        return len(pods), len(networks)
