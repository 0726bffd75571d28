"""Scheduler: delayed tells arrive in time order."""

from __future__ import annotations

from polling import wait_for


def test_scheduler_delivers_in_time_order(scheduler):
    got = []

    class Ref:
        def tell(self, message):
            got.append(message)

    scheduler.tell_later(0.2, Ref(), "late")
    scheduler.tell_later(0.0, Ref(), "now")
    wait_for(lambda: len(got) == 2, what="two deliveries")
    assert got == ["now", "late"]
