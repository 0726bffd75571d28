"""The board: each pod actor's last published state, readable without asking the (maybe busy) actor.

Pod actors post here whenever their state changes; the query actor reads it for `list pods` and as the
fallback for a pod that does not answer in time; metrics count pods by state from it. Concurrency
contract: one lock around a dict, held only for a dict operation; any thread.
"""

from __future__ import annotations

import threading
from collections import Counter


class Board:
    def __init__(self) -> None:
        self._states: dict = {}
        self._lock = threading.Lock()

    def post(self, state) -> None:
        with self._lock:
            self._states[state.uid] = state

    def remove(self, uid: str) -> None:
        with self._lock:
            self._states.pop(uid, None)

    def get(self, uid: str):
        with self._lock:
            return self._states.get(uid)

    def all(self) -> list:
        with self._lock:
            return list(self._states.values())

    def count_by_status(self) -> Counter:
        with self._lock:
            return Counter(state.status for state in self._states.values())
