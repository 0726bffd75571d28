"""Delayed tells: one thread and a heap, instead of a timer thread per pod.

Concurrency contract: `tell_later` may be called from any thread and never blocks; the scheduler thread
only ever calls `ActorRef.tell`, which does not block either, so a dead or busy actor cannot stall it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any

from loguru import logger


class Scheduler:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def tell_later(self, delay: float, ref, message) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), next(self._seq), ref, message))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - self._clock())
                if self._stopped:
                    return
                _, _, ref, message = heapq.heappop(self._heap)
            try:
                ref.tell(message)
            except Exception:  # the actor is gone: nothing to remind
                logger.trace("scheduler: {} gone, dropped {}", ref, message)
