"""Faults the sandbox injects on demand, for fault tests.

One `Faults` object per sandbox, shared by the API server (event loop thread) and the tests (any thread):
every field is read and written under a lock. Set from Python (`sandbox.faults.…`) or over the control
endpoint (`POST /sandbox/faults`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    #: seconds added before every exec runs.
    exec_latency: float = 0.0
    #: label selectors (`k=v,k2=v2`); an exec into a pod matching any of them hangs until lifted.
    hang_selectors: list[str] = field(default_factory=list)
    #: share (0..1) of API requests (not exec, not the control endpoint) answered with 500.
    fail_share: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: bumped by `drop_watches()`: open watches compare it with the value they started with.
    _watch_epoch: int = 0
    #: bumped by `compact()`: the store compares it to drop history.
    _compact_requests: int = 0

    def set_exec_latency(self, seconds: float) -> None:
        with self._lock:
            self.exec_latency = seconds

    def hang_execs(self, selector: str) -> None:
        with self._lock:
            self.hang_selectors.append(selector)

    def lift_hangs(self) -> None:
        with self._lock:
            self.hang_selectors.clear()

    def fail_requests(self, share: float) -> None:
        with self._lock:
            self.fail_share = share

    def drop_watches(self) -> None:
        with self._lock:
            self._watch_epoch += 1

    def compact(self) -> None:
        with self._lock:
            self._compact_requests += 1

    def clear(self) -> None:
        with self._lock:
            self.exec_latency = 0.0
            self.hang_selectors.clear()
            self.fail_share = 0.0
