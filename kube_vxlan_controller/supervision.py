"""Restart intensity, as an OTP supervisor counts it: at most `restarts` within any `period` seconds.

Pure: the supervisor actor records each restart here and escalates when it is refused. The clock is
injected so the window can be tested.
"""

from __future__ import annotations

import time
from collections import deque


class Intensity:
    def __init__(self, restarts: int, period: float, clock=time.monotonic) -> None:
        if restarts < 0 or period <= 0:
            raise ValueError(f"restart intensity must be ≥ 0 restarts in > 0 seconds, not {restarts} in {period}")
        self.restarts, self.period, self.clock = restarts, period, clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        """Record one restart; False when it makes more than `restarts` within `period`: give up."""
        now = self.clock()
        self._times.append(now)
        while now - self._times[0] > self.period:
            self._times.popleft()
        return len(self._times) <= self.restarts

    def __len__(self) -> int:
        return len(self._times)

    def __str__(self) -> str:
        return f"{len(self._times)} restarts in {self.period:g}s (at most {self.restarts})"
