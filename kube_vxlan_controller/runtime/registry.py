"""Who is running: the pod actors by pod UID and the network actors by network name.

Owned by the controller so that it outlives any one actor. Concurrency contract: a plain object behind
one lock, held for a dict operation, an actor start (pykka's start: sub-millisecond) or a `tell` (a queue
put), never longer; any thread may call it. A dead actor found here is replaced on the next call.

Network actors retire themselves (`retire_network`): the check that nothing waits in their mailbox and
the removal happen under the same lock as `tell_network`'s lookup and tell, so a message is either in
the old actor's mailbox before it decides (and it stays) or goes to a successor.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import pykka


class Registry:
    def __init__(self, *, pod_factory: Callable[[str, str], pykka.ActorRef],
                 network_factory: Callable[[str, bool], pykka.ActorRef]) -> None:
        self._pod_factory = pod_factory
        #: (name, synced): a network actor that may publish from its first message, or must wait for
        #: `Synced` (before the first complete list, and as the successor of a crashed one)
        self._network_factory = network_factory
        self._pods: dict[str, pykka.ActorRef] = {}
        self._networks: dict[str, pykka.ActorRef] = {}
        self._lock = threading.Lock()

    def pod(self, uid: str, pod_key: str) -> pykka.ActorRef:
        with self._lock:
            ref = self._pods.get(uid)
            if ref is None or not ref.is_alive():
                ref = self._pods[uid] = self._pod_factory(uid, pod_key)
            return ref

    def existing_pod(self, uid: str) -> pykka.ActorRef | None:
        with self._lock:
            return self._pods.get(uid)

    def forget_pod(self, uid: str) -> pykka.ActorRef | None:
        with self._lock:
            return self._pods.pop(uid, None)

    def tell_network(self, name: str, message, *, synced: bool) -> None:
        """Tell the network's actor, starting one when there is none (`synced`: whether a new one may
        publish at once). The successor of a crashed actor always waits for `Synced`."""
        with self._lock:
            ref = self._networks.get(name)
            if ref is None or not ref.is_alive():
                ref = self._networks[name] = self._network_factory(name, synced and ref is None)
            ref.tell(message)

    def retire_network(self, name: str, ref: pykka.ActorRef, idle: Callable[[], bool]) -> bool:
        """Called by a network actor with nothing left: forget it if `idle()` (its mailbox is empty)."""
        with self._lock:
            if self._networks.get(name) is not ref or not idle():
                return False
            del self._networks[name]
            return True

    def pods(self) -> dict[str, pykka.ActorRef]:
        with self._lock:
            return dict(self._pods)

    def networks(self) -> dict[str, pykka.ActorRef]:
        with self._lock:
            return dict(self._networks)

    def stop_pods(self, deadline: float) -> int:
        """Stop every pod actor (they may be mid-exec) within `deadline` (a time.monotonic() value) and forget
        them; returns how many."""
        with self._lock:
            refs, self._pods = list(self._pods.values()), {}
        return _stop_all(refs, deadline)

    def stop_networks(self, deadline: float) -> int:
        """The same for the network actors."""
        with self._lock:
            refs, self._networks = list(self._networks.values()), {}
        return _stop_all(refs, deadline)


def _stop_all(refs: list[pykka.ActorRef], deadline: float) -> int:
    futures = []
    for ref in refs:
        try:
            futures.append(ref.stop(block=False))
        except pykka.ActorDeadError:
            pass
    for future in futures:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # stopped already, or stuck past the deadline: nothing more to do
            pass
    return len(refs)
