import pytest

from kube_vxlan_controller.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(rand: float = 0.5, **kwargs) -> tuple[Backoff, Clock]:
    clock = Clock()
    return Backoff(clock=clock, rand=lambda: rand, **kwargs), clock


def test_delays_double_from_initial_up_to_the_cap_without_jitter_at_mid_random():
    backoff, _ = make()
    delays = [backoff.next() for _ in range(8)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_jitter_spreads_each_delay_by_the_given_share_both_ways():
    low, _ = make(rand=0.0)
    high, _ = make(rand=0.999999)
    assert low.next() == pytest.approx(0.8 * 0.8)
    assert high.next() == pytest.approx(0.8 * 1.2, rel=1e-5)


def test_jittered_delay_never_exceeds_the_cap():
    backoff, _ = make(rand=0.999999)
    delays = [backoff.next() for _ in range(20)]
    assert max(delays) == 30.0
    assert delays[-1] == 30.0


def test_jitter_at_the_cap_still_spreads_downwards():
    backoff, _ = make(rand=0.0)
    delays = [backoff.next() for _ in range(20)]
    assert delays[-1] == pytest.approx(24.0)


def test_reset_starts_over():
    backoff, _ = make()
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == pytest.approx(0.8)
    assert backoff.attempts == 1


def test_failure_long_after_the_last_one_starts_over():
    backoff, clock = make()
    for _ in range(5):
        backoff.next()
    clock.now += 121.0
    assert backoff.next() == pytest.approx(0.8)


def test_failure_soon_after_the_last_one_keeps_growing():
    backoff, clock = make()
    for _ in range(3):
        backoff.next()
    clock.now += 119.0
    assert backoff.next() == pytest.approx(6.4)


def test_health_counts_from_healthy_since_not_from_the_last_failure():
    backoff, clock = make()
    for _ in range(6):
        backoff.next()  # last delay 25.6 s
    clock.now += 30.0
    backoff.healthy_since()  # reconnected after waiting
    clock.now += 100.0  # 130 s after the failure, but only 100 s healthy
    assert backoff.next() == pytest.approx(30.0)
    clock.now += 10.0
    backoff.healthy_since(clock.now)
    clock.now += 121.0
    assert backoff.next() == pytest.approx(0.8)


def test_a_failure_forgets_the_healthy_mark_before_it():
    backoff, clock = make()
    backoff.next()
    backoff.healthy_since(clock.now - 500.0)
    assert backoff.next() == pytest.approx(0.8)  # 500 s healthy: starts over
    clock.now += 1.0
    assert backoff.next() == pytest.approx(1.6)  # the mark went with the failure


def test_many_failures_do_not_overflow():
    backoff, _ = make()
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"factor": 0.5}, {"cap": 0.1}, {"jitter": 1.0}, {"jitter": -0.1}, {"reset_after": -1}],
)
def test_rejects_nonsense_parameters(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
