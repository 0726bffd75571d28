"""Supervisor: one level of the supervision tree, restarting its children one_for_one within a restart
intensity, as an OTP supervisor does.

pykka has no supervision: an exception escaping a `tell` handler stops that actor for good and calls its
`on_failure`. Handlers catch what they expect, so what reaches `on_failure` is a bug: the failed actor
tells its supervisor (`ChildFailed`, with the traceback), which logs it once, counts it
(`kvc_actor_restarts_total{kind}`) and restarts the child through the callable it was given for that kind
of child — level-triggered, from state that outlives the child (the watcher's pod index, a fresh list).

More than `intensity` allows (R restarts in T seconds): the supervisor gives up, as OTP's does. Below the
root it tells its parent, which restarts the whole level (its children stopped, a fresh supervisor, every
child rebuilt); at the root, `exhausted()` is called: the process logs one critical line and exits
non-zero, so the kubelet restarts it and the crash loop shows in `kubectl get pods`. The tree is built by
`tree.ActorTree`.

Concurrency contract: owns its restart history; never blocks (the restart callables tell or start actors).
"""

from __future__ import annotations

import traceback as tb
from typing import Callable, Mapping

import pykka
from loguru import logger

from ..messages import ChildFailed
from ..supervision import Intensity


def child_failed(kind: str, key: str, error: BaseException, trace, name: str = "") -> ChildFailed:
    """What an actor's `on_failure` tells its supervisor: who it was, the exception and its traceback."""
    return ChildFailed(kind, key, repr(error), "".join(tb.format_exception(type(error), error, trace)).rstrip(),
                       name)


class Supervisor(pykka.ThreadingActor):
    def __init__(self, name: str, *, restart: Mapping[str, Callable[[str], None]], intensity: Intensity,
                 parent: pykka.ActorRef | None = None, exhausted: Callable[[], None] | None = None,
                 metrics=None) -> None:
        super().__init__()
        self.name, self.restart, self.intensity = name, restart, intensity
        self.parent, self.exhausted, self.metrics = parent, exhausted, metrics
        self.gave_up = False

    def on_receive(self, message):
        if isinstance(message, ChildFailed) and not self.gave_up:
            self._failed(message)

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._give_up(f"the supervisor itself crashed: {exception_value!r}")

    def _failed(self, message: ChildFailed) -> None:
        if self.metrics is not None:
            self.metrics.actor_restarts.labels(message.kind).inc()
        allowed = self.intensity.allow()
        who = f"{message.kind} {message.name or message.key}"
        logger.error("supervisor {}: {} crashed: {}; {} ({})\n{}", self.name, who, message.error,
                     "restarting it" if allowed else "giving up", self.intensity, message.trace)
        if allowed:
            self.restart[message.kind](message.key)
        else:
            self._give_up(f"{who} crashed: {self.intensity}")

    def _give_up(self, why: str) -> None:
        self.gave_up = True
        if self.parent is not None:
            logger.error("supervisor {}: restart intensity exceeded, escalating: {}", self.name, why)
            try:
                self.parent.tell(ChildFailed(self.name, self.name, f"restart intensity exceeded: {why}",
                                             name="level"))
            except pykka.ActorDeadError:
                pass
        else:
            logger.critical("supervisor {}: restart intensity exceeded: {}; exiting", self.name, why)
            if self.exhausted is not None:
                self.exhausted()
