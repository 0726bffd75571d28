"""Leader election decisions (kube_vxlan_controller/election.py) on a fake Lease and a fake clock.

The fake server keeps one record and its version; each candidate's lock remembers the version it last
read or wrote and is refused (Conflict) when the server's moved on, as a resourceVersion is.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from kube_vxlan_controller.election import Elector, Role, check_timing
from kube_vxlan_controller.k8s.errors import ApiUnavailable, Conflict, K8sError
from kube_vxlan_controller.model import LeaseRecord
from kube_vxlan_controller.settings import Settings

LEASE, RENEW, RETRY = 15, 10.0, 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Server:
    """The API server's side of one Lease."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False
        self.reads = 0
        #: seconds each request takes (on the fake clock)
        self.latency = 0.0
        #: called once, right after the next read is answered (to interleave another candidate)
        self.after_read = None

    def write(self, record: LeaseRecord) -> int:
        self.record, self.version = record, self.version + 1
        return self.version

    def request(self) -> None:
        self.clock.advance(self.latency)
        if self.down:
            raise ApiUnavailable("API server unreachable: connection refused")


class FakeLock:
    """A candidate's view of the Lease: the version it last read or wrote guards its updates."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.version: int | None = None

    def describe(self) -> str:
        return "kube-system/kube-vxlan-controller"

    def get(self, timeout: float) -> LeaseRecord | None:
        self.server.request()
        self.server.reads += 1
        self.version = self.server.version if self.server.record else None
        hook, self.server.after_read = self.server.after_read, None
        if hook:
            hook()
        return self.server.record

    def create(self, record: LeaseRecord, timeout: float) -> None:
        self.server.request()
        if self.server.record is not None:
            raise Conflict('409 leases.coordination.k8s.io "kube-vxlan-controller" already exists', status=409)
        self.version = self.server.write(record)

    def update(self, record: LeaseRecord, timeout: float) -> None:
        self.server.request()
        if self.version is None:
            raise K8sError("update before it was read")
        if self.version != self.server.version:
            raise Conflict("409 the object has been modified", status=409)
        self.version = self.server.write(record)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock) -> Server:
    return Server(clock)


def candidate(name: str, server: Server, clock: Clock, **kwargs) -> Elector:
    def wait(event: threading.Event, seconds: float) -> bool:
        clock.advance(seconds)
        return event.is_set()

    options = dict(lease_duration=LEASE, renew_deadline=RENEW, retry_period=RETRY, clock=clock, wait=wait,
                   wallclock=lambda: datetime.fromtimestamp(clock(), timezone.utc))
    return Elector(FakeLock(server), identity=name, **{**options, **kwargs})


def test_the_first_candidate_creates_the_lease_and_holds_it(server, clock):
    a = candidate("a", server, clock)
    assert a.try_acquire_or_renew()
    assert server.record == LeaseRecord(holder="a", lease_duration=15, acquire_time=a.wallclock(),
                                        renew_time=a.wallclock(), transitions=0)
    assert a.is_leader() and a.leader == "a"


def test_a_held_lease_is_taken_only_a_lease_duration_after_the_record_was_seen_to_change(server, clock):
    a, b = candidate("a", server, clock), candidate("b", server, clock)
    assert a.try_acquire_or_renew()
    # The record's own times say nothing: a renewTime far in the past (a clock that lags) changes nothing.
    server.record = LeaseRecord(holder="a", lease_duration=15, renew_time=datetime(2001, 1, 1, tzinfo=timezone.utc))
    assert not b.try_acquire_or_renew()
    assert b.leader == "a" and not b.is_leader()
    clock.advance(14.9)
    assert not b.try_acquire_or_renew()
    clock.advance(0.2)
    assert b.try_acquire_or_renew()
    assert server.record.holder == "b" and server.record.transitions == 1


def test_a_renewal_seen_starts_the_standbys_wait_over(server, clock):
    a, b = candidate("a", server, clock), candidate("b", server, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.advance(10)
    assert a.try_acquire_or_renew()  # renewed
    clock.advance(4)
    assert not b.try_acquire_or_renew()  # sees the renewal now, at 14: in force until 29
    clock.advance(14.9)
    assert not b.try_acquire_or_renew()
    clock.advance(0.2)
    assert b.try_acquire_or_renew()


def test_a_released_lease_is_free_at_once(server, clock):
    a, b = candidate("a", server, clock), candidate("b", server, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert server.record.holder == "" and server.record.lease_duration == 1
    assert not a.is_leader() and a.horizon() == float("-inf")
    assert b.try_acquire_or_renew()  # no time passed
    assert server.record.holder == "b" and server.record.transitions == 1


def test_of_two_candidates_for_an_expired_lease_only_one_wins_the_other_gets_a_conflict(server, clock):
    a, b, c = (candidate(name, server, clock) for name in "abc")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.advance(LEASE + 1)
    # c reads the expired record, then b takes it before c writes: c's write carries a stale version.
    server.after_read = lambda: b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew()
    assert server.record.holder == "b"
    assert not c.is_leader() and c.leader == "b"


def test_two_candidates_creating_the_lease_at_once_one_wins(server, clock):
    a, b = candidate("a", server, clock), candidate("b", server, clock)
    server.after_read = lambda: a.try_acquire_or_renew()  # b read "none", a created it meanwhile
    assert not b.try_acquire_or_renew()
    assert server.record.holder == "a"


def test_the_leader_renews_without_reading_and_keeps_its_acquire_time(server, clock):
    a = candidate("a", server, clock)
    assert a.try_acquire_or_renew()
    first = server.record
    reads = server.reads
    clock.advance(2)
    assert a.try_acquire_or_renew()
    assert server.reads == reads
    assert server.record.renew_time > first.renew_time and server.record.acquire_time == first.acquire_time


def test_a_leader_whose_lease_was_taken_reads_it_and_stands_down(server, clock):
    a = candidate("a", server, clock)
    assert a.try_acquire_or_renew()
    server.write(LeaseRecord(holder="x", lease_duration=15))  # someone else's write: a's version is stale
    assert not a.try_acquire_or_renew()
    assert a.leader == "x" and not a.is_leader() and a.horizon() == float("-inf")


def test_the_horizon_counts_from_when_the_last_write_was_sent(server, clock):
    a = candidate("a", server, clock)
    server.latency = 0.4
    sent = clock()
    assert a.try_acquire_or_renew()  # a read (404: none) and a create, 0.8 s in all
    assert a.horizon() == sent + LEASE
    clock.advance(2)
    sent = clock()
    assert a.try_acquire_or_renew()
    assert a.horizon() == sent + LEASE


def test_a_leader_that_cannot_renew_gives_up_after_the_renew_deadline_before_its_lease_expires(server, clock):
    tries: list[float] = []
    a = candidate("a", server, clock)
    real = a.try_acquire_or_renew

    def counted(timeout=None):
        tries.append(clock())
        return real(timeout)

    a.try_acquire_or_renew = counted
    lost: list[float] = []
    renewed: list[float] = []

    def lead():
        renewed.append(clock())

    a.on_started_leading = lead
    a.on_stopped_leading = lambda: lost.append(clock())
    original_request = server.request

    def request():
        if len(tries) > 3:  # the acquisition and two renewals go through, then the API is gone
            server.down = True
        original_request()

    server.request = request
    a.run()
    last_write = tries[2]
    assert a.role is Role.LOST and lost == [last_write + RETRY + RENEW]
    assert lost[0] < last_write + LEASE, "it must give up before any standby may take over"
    assert all(t < lost[0] for t in tries), "no try after the renew deadline"
    assert tries[3:] == [last_write + RETRY + k * RETRY for k in range(5)]


def test_a_standby_loop_takes_an_abandoned_lease_after_the_lease_duration(server, clock):
    a, b = candidate("a", server, clock), candidate("b", server, clock)
    assert a.try_acquire_or_renew()
    seen = clock()
    started: list[float] = []

    def lead():
        started.append(clock())
        b.stop()

    b.on_started_leading = lead
    b.run()
    assert started and seen + LEASE < started[0] <= seen + LEASE + RETRY
    assert server.record.holder == "b"


def test_release_keeps_the_transitions_and_leaves_a_successors_lease_alone(server, clock):
    a = candidate("a", server, clock)
    server.write(LeaseRecord(holder="old", lease_duration=15, transitions=3))
    assert not a.try_acquire_or_renew()
    clock.advance(LEASE + 1)
    assert a.try_acquire_or_renew()
    assert server.record.transitions == 4
    assert a.release()
    assert server.record == LeaseRecord(holder="", lease_duration=1, acquire_time=a.wallclock(),
                                        renew_time=a.wallclock(), transitions=4)

    b = candidate("b", server, clock)
    assert b.try_acquire_or_renew()
    b._observed = LeaseRecord(holder="b", lease_duration=15)  # b believes it still holds it
    server.write(LeaseRecord(holder="c", lease_duration=15))
    assert b.release()
    assert server.record.holder == "c", "a release must never clear another holder's Lease"


def test_release_reads_again_after_a_conflict(server, clock):
    a = candidate("a", server, clock)
    assert a.try_acquire_or_renew()
    server.after_read = lambda: server.write(server.record)  # a renewal in flight lands after the read
    assert a.release()
    assert server.record.holder == ""


def test_each_change_of_holder_is_reported_once(server, clock):
    seen: list[str] = []
    a, b = candidate("a", server, clock), candidate("b", server, clock, on_new_leader=seen.append)
    assert a.try_acquire_or_renew()
    for _ in range(3):
        b.try_acquire_or_renew()
        b.report()
    a.release()
    b.try_acquire_or_renew()
    b.report()
    assert seen == ["a", "b"]


@pytest.mark.parametrize("lease, renew, retry", [(10, 10, 2), (15, 2.4, 2), (15, 10, 0)])
def test_timing_must_leave_room_as_client_go_demands(lease, renew, retry):
    with pytest.raises(ValueError, match="--lease-duration > --renew-deadline"):
        check_timing(lease, renew, retry)


def test_an_exec_must_fit_in_a_lease():
    with pytest.raises(ValueError, match="an exec must fit in a lease"):
        Settings(namespace="x", exec_deadline=10, lease_duration=12, renew_deadline=8)
    Settings(namespace="x", exec_deadline=2, lease_duration=5, renew_deadline=4, retry_period=0.5)
