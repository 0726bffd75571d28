"""Faults the sandbox injects on demand, for fault tests.

One `Faults` object per sandbox, shared by the API server (event loop thread) and the tests (any thread):
every field is read and written under a lock. Set from Python (`sandbox.faults.…`) or over the control
endpoint (`POST /sandbox/faults`).

`sever_execs(selector)` closes the exec streams open now into matching pods, as a restarting API server
or kubelet does (a long-lived exec, a controller's session, sees its connection close; the commands get
stdin's end). `break_commands(selector, word)`: execs into matching pods whose command contains `word`
cannot start, answered as runc answers for a missing binary — an agent image that lacks what a command
needs. A hung pod (`hang_execs`) also stalls the execs already open into it: what their clients write is
not delivered until the hang is lifted.

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
    #: (selector, word): an exec into a matching pod whose argv contains the word cannot start.
    broken_commands: list[tuple[str, str]] = field(default_factory=list)
    #: how many times exec streams were severed
    severs: int = 0
    #: share (0..1) of API requests (not exec, not the control endpoint, not /version) answered with 500.
    fail_share: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: how many times watches were dropped and history compacted (for tests and the control endpoint).
    watch_drops: int = 0
    compactions: int = 0
    #: set by the sandbox: close every open watch now / forget the history now.
    _on_drop_watches: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _on_compact: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _on_sever: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    #: nodes cut off now
    cut_nodes: set[str] = field(default_factory=set)
    _on_cut: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    _on_restore: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def attach(self, *, drop_watches: Callable[[], None], compact: Callable[[], None],
               cut_node: Callable[[str], None], restore_node: Callable[[str], None],
               sever_execs: Callable[[str], None]) -> None:
        self._on_drop_watches, self._on_compact, self._on_sever = drop_watches, compact, sever_execs
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

    def sever_execs(self, selector: str = "") -> None:
        """Close every exec stream open now into pods matching `selector` ("": every pod)."""
        parse_labels(selector)
        with self._lock:
            self.severs += 1
        if self._on_sever:
            self._on_sever(selector)

    def break_commands(self, selector: str, word: str) -> None:
        """Execs into pods matching `selector` whose argv contains `word` cannot start, until `mend_commands`."""
        parse_labels(selector)
        with self._lock:
            self.broken_commands.append((selector, word))

    def mend_commands(self) -> None:
        with self._lock:
            self.broken_commands.clear()

    def broken(self, labels: dict, argv: list[str]) -> bool:
        """Can an exec of `argv` into a pod with these labels not start now?"""
        with self._lock:
            broken = list(self.broken_commands)
        return any(parse_labels(s)(labels) and any(word in arg for arg in argv) for s, word in broken)

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
        """No latency, no hangs, no broken commands, no failing requests."""
        with self._lock:
            self.exec_latency = 0.0
            self.hang_selectors.clear()
            self.broken_commands.clear()
            self.fail_share = 0.0

    def snapshot(self) -> dict:
        with self._lock:
            return {"exec_latency": self.exec_latency, "hang_selectors": list(self.hang_selectors),
                    "fail_share": self.fail_share, "watch_drops": self.watch_drops,
                    "compactions": self.compactions, "cut_nodes": sorted(self.cut_nodes),
                    "broken_commands": [list(b) for b in self.broken_commands], "severs": self.severs}
