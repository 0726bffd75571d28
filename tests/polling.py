"""The one way tests wait: poll a condition with a deadline (never sleep and hope)."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition", *,
             interval: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy, and return that; after `timeout` seconds
    fail with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)
