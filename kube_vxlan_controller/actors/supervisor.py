"""Supervisor: one_for_one restarts with a restart budget, as an Erlang supervisor would.

pykka has no supervision: an exception escaping a `tell` handler stops that actor for good. Handlers
catch what they expect, so what reaches `on_failure` is a bug; the failed actor tells the supervisor
(`ChildFailed`) and the supervisor decides:
- the pod watcher is restarted (after a backoff); its fresh list rebuilds every pod's state;
- a pod or network actor is restarted by the watcher from its pod index (level-based): a network's
  successor learns every pod naming it (`Rebuild`), a pod's successor its pod and its peers (`Reroute`);
- more than `max_restarts` within `window` seconds: the process gives up (`fatal` is set) and exits
  non-zero, so Kubernetes restarts it — better than limping on.

Concurrency contract: owns the restart history; never blocks (tells and scheduled tells only).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import pykka
from loguru import logger

from ..backoff import Backoff
from ..messages import ChildFailed, Rebuild, Reroute, RestartWatcher


class Supervisor(pykka.ThreadingActor):
    def __init__(self, *, scheduler, start_watcher: Callable[[pykka.ActorRef], pykka.ActorRef], fatal: threading.Event,
                 max_restarts: int = 5, window: float = 10.0, clock=time.monotonic) -> None:
        super().__init__()
        self.scheduler, self.start_watcher, self.fatal = scheduler, start_watcher, fatal
        self.max_restarts, self.window, self.clock = max_restarts, window, clock
        self.restarts: deque[float] = deque()
        self.backoff = Backoff(initial=0.2, cap=5.0)
        self.watcher: pykka.ActorRef | None = None

    def start_children(self) -> None:
        """Asked once by the controller after it holds this supervisor's ref (so the actors it starts
        can be handed that ref), not in on_start."""
        self.watcher = self.start_watcher(self.actor_ref)

    def on_stop(self) -> None:
        if self.watcher is not None and self.watcher.is_alive():
            self.watcher.stop(timeout=10)

    def on_receive(self, message):
        try:
            if isinstance(message, ChildFailed):
                self._failed(message)
            elif isinstance(message, RestartWatcher):
                logger.info("supervisor: restarting the pod watcher")
                self.watcher = self.start_watcher(self.actor_ref)
        except Exception:
            logger.exception("supervisor: failed to handle {}", message)

    def current_watcher(self) -> pykka.ActorRef | None:
        return self.watcher

    def _failed(self, message: ChildFailed) -> None:
        now = self.clock()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > self.window:
            self.restarts.popleft()
        logger.error("supervisor: {} {} crashed: {} ({} restarts in {:.0f}s)", message.kind, message.key,
                     message.error, len(self.restarts), self.window)
        if len(self.restarts) > self.max_restarts:
            logger.critical("supervisor: restart budget exhausted ({} in {:.0f}s): exiting", len(self.restarts),
                            self.window)
            self.fatal.set()
            return
        if message.kind == "watcher":
            self.scheduler.tell_later(self.backoff.next(), self.actor_ref, RestartWatcher())
        elif self.watcher is not None:
            try:
                self.watcher.tell(Rebuild(message.key) if message.kind == "network" else Reroute(message.key))
            except pykka.ActorDeadError:
                pass
