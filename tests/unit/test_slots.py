"""FairSlots: at most N holders, and freed slots go to waiters in the order they came."""

from __future__ import annotations

import threading

import pytest

from kube_vxlan_controller.slots import FairSlots
from polling import wait_for


def test_waiters_get_freed_slots_in_the_order_they_came_and_nobody_overtakes_them():
    slots, served = FairSlots(2), []
    slots.acquire()
    slots.acquire()
    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=lambda i=i: (slots.acquire(), served.append(i))))
        threads[-1].start()
        wait_for(lambda: len(slots._waiters) == i + 1, what=f"waiter {i} queued")  # a known arrival order
    for i in range(5):
        slots.release()  # one slot freed: it goes to the oldest waiter, none is left free for a newcomer
        wait_for(lambda: len(served) == i + 1, what=f"one more served after release {i}")
        assert slots._free == 0
    for t in threads:
        t.join(timeout=5)
    assert served == [0, 1, 2, 3, 4]


def test_at_most_count_hold_a_slot_at_once():
    slots, lock, holding, most = FairSlots(3), threading.Lock(), [0], [0]

    def work():
        for _ in range(50):
            with slots:
                with lock:
                    holding[0] += 1
                    most[0] = max(most[0], holding[0])
                with lock:
                    holding[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert most[0] <= 3 and holding[0] == 0 and slots._free == 3


def test_no_slot_is_refused():
    with pytest.raises(ValueError):
        FairSlots(0)
