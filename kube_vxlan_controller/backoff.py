"""Exponential backoff with jitter and reset after a healthy spell.

Semantics of client-go's reflector and kube-rs' `DefaultBackoff`: the first delay is `initial`
(0.8 s), each further one `factor` (×2) times the previous, never more than `cap` (30 s). Every delay
is spread by ±`jitter` (0.2 → ±20 %) so that many clients failing together do not retry together;
the spread stays under `cap`. When the last failure lies more than `reset_after` (120 s) in the past,
the sequence starts over: a connection that was healthy for two minutes and then drops retries quickly.
`healthy_since(t)` narrows that: health is counted from `t` (say, when a watch connected) rather than
from the last failure, so a connection that failed, waited 30 s, and then lived 100 s does not count
as healthy for 130 s.

Concurrency: a `Backoff` is plain state without a lock; one owner (one loop, one actor) uses it.
Clock and randomness are injected so the sequence can be tested exactly.
"""

from __future__ import annotations

import random
import time
from typing import Callable


class Backoff:
    """Delays to wait between retries: `next()` after each failure, `reset()` after a success."""

    def __init__(
        self,
        initial: float = 0.8,
        factor: float = 2.0,
        cap: float = 30.0,
        jitter: float = 0.2,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or factor < 1 or cap < initial or not 0 <= jitter < 1 or reset_after < 0:
            raise ValueError(
                f"bad backoff: initial={initial} factor={factor} cap={cap} jitter={jitter} "
                f"reset_after={reset_after}"
            )
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.jitter = jitter
        self.reset_after = reset_after
        self._clock = clock
        self._rand = rand
        self._attempts = 0
        self._last_failure: float | None = None
        self._healthy_since: float | None = None

    @property
    def attempts(self) -> int:
        """Failures since the sequence last started over."""
        return self._attempts

    def next(self) -> float:
        """Record a failure now and return how many seconds to wait before the next attempt."""
        now = self._clock()
        if self._healthy_for(now) > self.reset_after:
            self.reset()
        # The exponent stops growing long after the cap is reached, so it never overflows a float.
        base = min(self.cap, self.initial * self.factor ** min(self._attempts, 64))
        spread = 1.0 + self.jitter * (2.0 * self._rand() - 1.0)
        self._attempts += 1
        self._last_failure = now
        self._healthy_since = None
        return min(self.cap, base * spread)

    def reset(self) -> None:
        """Start over: the next failure waits about `initial` again."""
        self._attempts = 0
        self._last_failure = None
        self._healthy_since = None

    def healthy_since(self, t: float | None = None) -> None:
        """Things work again since `t` (default: now, on the injected clock)."""
        self._healthy_since = self._clock() if t is None else t

    def _healthy_for(self, now: float) -> float:
        if self._last_failure is None:
            return 0.0
        since = self._last_failure if self._healthy_since is None else self._healthy_since
        return now - since
