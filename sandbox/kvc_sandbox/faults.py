"""Faults the sandbox injects on demand, for fault tests.

One `Faults` object per sandbox, shared by the API server (event loop thread) and the tests (any thread):
every field is read and written under a lock. Set from Python (`sandbox.faults.…`) or over the control
endpoint (`POST /sandbox/faults`).

`cut_node(name)` cuts a node off: its underlay link goes down and its kubelet stops reporting (cluster.py,
nodes.py: NotReady after the grace period, the unreachable taint, evictions); `restore_node(name)` brings
it back. `drop_watches()`, `compact()`, `cut_node()` and `restore_node()` act at once: the sandbox attaches callbacks that run them on its event
loop, and a call from another thread returns only once they have run (so a test that compacts and then
watches is never racing the compaction).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from .selectors import parse_labels


@dataclass
class Faults:
    #: seconds added before every exec runs.
    exec_latency: float = 0.0
    #: label selectors (`k=v,k2=v2`); an exec into a pod matching any of them hangs until lifted.
    hang_selectors: list[str] = field(default_factory=list)
    #: share (0..1) of API requests (not exec, not the control endpoint, not /version) answered with 500.
    fail_share: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: how many times watches were dropped and history compacted (for tests and the control endpoint).
    watch_drops: int = 0
    compactions: int = 0
    #: set by the sandbox: close every open watch now / forget the history now.
    _on_drop_watches: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _on_compact: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    #: nodes cut off now
    cut_nodes: set[str] = field(default_factory=set)
    _on_cut: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    _on_restore: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def attach(self, *, drop_watches: Callable[[], None], compact: Callable[[], None],
               cut_node: Callable[[str], None], restore_node: Callable[[str], None]) -> None:
        self._on_drop_watches, self._on_compact = drop_watches, compact
        self._on_cut, self._on_restore = cut_node, restore_node

    def cut_node(self, name: str) -> None:
        """Cut the node off (ValueError: no such node, or the sandbox is not running)."""
        if self._on_cut is None:
            raise ValueError("the sandbox is not running")
        self._on_cut(name)
        with self._lock:
            self.cut_nodes.add(name)

    def restore_node(self, name: str) -> None:
        if self._on_restore is None:
            raise ValueError("the sandbox is not running")
        self._on_restore(name)
        with self._lock:
            self.cut_nodes.discard(name)

    def set_exec_latency(self, seconds: float) -> None:
        with self._lock:
            self.exec_latency = max(0.0, float(seconds))

    def hang_execs(self, selector: str) -> None:
        """Execs into pods whose labels match `selector` hang (before running anything) until `lift_hangs`."""
        parse_labels(selector)  # a malformed selector fails here, not in every exec
        with self._lock:
            self.hang_selectors.append(selector)

    def lift_hangs(self) -> None:
        with self._lock:
            self.hang_selectors.clear()

    def hangs(self, labels: dict) -> bool:
        """Does an exec into a pod with these labels hang now?"""
        with self._lock:
            selectors = list(self.hang_selectors)
        return any(parse_labels(s)(labels) for s in selectors)

    def fail_requests(self, share: float) -> None:
        with self._lock:
            self.fail_share = min(1.0, max(0.0, float(share)))

    def drop_watches(self) -> None:
        """Close every open watch stream now (clients see the response end)."""
        with self._lock:
            self.watch_drops += 1
        if self._on_drop_watches:
            self._on_drop_watches()

    def compact(self) -> None:
        """Forget the event history now: a watch from an older resourceVersion gets 410 Expired."""
        with self._lock:
            self.compactions += 1
        if self._on_compact:
            self._on_compact()

    def clear(self) -> None:
        """No latency, no hangs, no failing requests."""
        with self._lock:
            self.exec_latency = 0.0
            self.hang_selectors.clear()
            self.fail_share = 0.0

    def snapshot(self) -> dict:
        with self._lock:
            return {"exec_latency": self.exec_latency, "hang_selectors": list(self.hang_selectors),
                    "fail_share": self.fail_share, "watch_drops": self.watch_drops,
                    "compactions": self.compactions, "cut_nodes": sorted(self.cut_nodes)}
