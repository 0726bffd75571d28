"""The bench's bookkeeping (bench/wiring.py): when pods count as wired, and how join and leave lags are read."""

from __future__ import annotations

import pytest

from bench.scenarios import percentiles
from bench.wiring import Wiring

NET = {"vxeth0": "vxeth0"}


def pods(wiring: Wiring, *names: str, t: float = 0.0, running: bool = True) -> None:
    for i, name in enumerate(names):
        wiring.seen(name, name, NET, f"10.0.0.{i + 1}", running, False, t)


def fdb(wiring: Wiring, name: str, t: float, add=(), delete=()) -> None:
    wiring.fdb_changed(name, t, [["vxeth0", ip] for ip in add], [["vxeth0", ip] for ip in delete], True)


def test_a_pod_is_wired_when_its_fdb_holds_exactly_the_other_pods_since_its_last_change():
    w = Wiring()
    pods(w, "a", "b", t=1.0)
    assert w.evaluate(2.0).wired == 0  # nothing known from the kernel yet
    fdb(w, "a", 3.0, add=["10.0.0.2"])
    fdb(w, "b", 4.0, add=["10.0.0.1", "10.0.0.9"])
    count = w.evaluate(5.0)
    assert (count.wired, count.total, count.last_wired) == (1, 2, 3.0)
    fdb(w, "b", 6.0, delete=["10.0.0.9"])
    assert w.evaluate(9.0) == type(count)(2, 2, 6.0)


def test_a_pod_without_an_ip_keeps_its_network_unwired():
    w = Wiring()
    pods(w, "a", "b")
    w.seen("c", "c", NET, None, False, False, 0.0)
    fdb(w, "a", 1.0, add=["10.0.0.2"])
    fdb(w, "b", 1.0, add=["10.0.0.1"])
    assert w.evaluate(2.0).wired == 0
    w.leaving("c", 3.0)
    count = w.evaluate(4.0)
    assert (count.wired, count.total, count.last_wired) == (2, 2, 3.0)  # wired once c left


def test_join_lag_runs_to_the_last_member_then_and_ignores_later_members():
    w = Wiring(track_events=True)
    pods(w, "a", "b")
    fdb(w, "a", 0.0)
    fdb(w, "b", 0.0)
    w.seen("c", "c", NET, "10.0.0.3", True, False, 10.0)
    w.seen("d", "d", NET, "10.0.0.4", True, False, 11.0)  # joins later: it getting c is d's own join
    fdb(w, "d", 11.0)
    fdb(w, "a", 10.5, add=["10.0.0.3"])
    w.evaluate(10.6)
    assert w.join_lags == []
    fdb(w, "b", 10.8, add=["10.0.0.3"])
    w.evaluate(12.0)
    assert w.join_lags[0] == (10.0, pytest.approx(0.8))


def test_leave_lag_runs_from_the_deletion_to_the_last_removal():
    w = Wiring(track_events=True)
    pods(w, "a", "b", "c")
    fdb(w, "a", 0.0, add=["10.0.0.2", "10.0.0.3"])
    fdb(w, "b", 0.0, add=["10.0.0.1", "10.0.0.3"])
    fdb(w, "c", 0.0, add=["10.0.0.1", "10.0.0.2"])
    w.evaluate(1.0)  # their own joins settle: every peer has them
    assert len(w.join_lags) == 3
    w.leaving("c", 5.0)
    fdb(w, "a", 5.2, delete=["10.0.0.3"])
    w.evaluate(5.3)
    assert w.leave_lags == [] and w.pending_events() == 1
    fdb(w, "b", 5.5, delete=["10.0.0.3"])
    w.evaluate(6.0)
    assert w.leave_lags == [(5.0, pytest.approx(0.5))] and w.pending_events() == 0


def test_percentiles_are_nearest_rank():
    assert percentiles([]) == {"n": 0}
    assert percentiles([float(i) for i in range(1, 101)]) == {"n": 100, "p50": 50.0, "p99": 99.0, "max": 100.0}
    assert percentiles([3.0]) == {"n": 1, "p50": 3.0, "p99": 3.0, "max": 3.0}
