"""A counting semaphore that serves waiters in the order they came.

`threading.Semaphore` is not fair: a freed slot wakes the first waiter, but a thread that arrives
before the woken one runs takes the slot, and the woken one waits again, at the back. When every slot
is busy (hundreds of pod actors syncing through 32 exec slots under churn) some pods wait many turns
while others go again and again: the slowest member, which decides when a join is complete, falls
seconds behind. Here a freed slot is handed to the oldest waiter directly, and nobody overtakes a
waiter.

Concurrency contract: `acquire`/`release` (or `with slots:`) from any thread; a waiter blocks on a lock
of its own, which `release` opens; the shared state is held under one lock for a few operations.
"""

from __future__ import annotations

import threading
from collections import deque


class FairSlots:
    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"need at least one slot, not {count}")
        self._free = count
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        gate.acquire()  # opened by `release`, which handed this waiter its slot

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    def __enter__(self) -> "FairSlots":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
