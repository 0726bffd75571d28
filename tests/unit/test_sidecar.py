"""The sidecar's policy: a session opened at the first request, reopened when it ended, a fallback to one
exec per request when it cannot be kept, and errors that end a request whichever way it goes (fakes; the
same against the sandbox's faults: tests/k8s/test_live_sessions.py)."""

from __future__ import annotations

import pytest

from kube_vxlan_controller.agentsession import CARRIED_MAX, carried, packed, reply_end
from kube_vxlan_controller.k8s.errors import ApiUnavailable, ExecTimeout, Forbidden
from kube_vxlan_controller.k8s.sessions import SessionEnded
from kube_vxlan_controller.metrics import Metrics
from kube_vxlan_controller.model import ExecResult, Pod
from kube_vxlan_controller.sidecar import Sidecar

POD = Pod(uid="u", namespace="default", name="p")
FDB = "fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.2\n"
LINKS = "link set vx0 mtu 1400\n"


class Session:
    """Answers each request with exit 0, until told to end (`end`) or to stay silent (`silent`)."""

    def __init__(self, end_after: int | None = None, silent: bool = False, garbled: bool = False) -> None:
        self.end_after, self.silent, self.garbled = end_after, silent, garbled
        self.replies, self.ended, self.why = 0, None, "open"
        self.asked: list[str] = []
        #: the header of the request its opening carried (`agentsession.carried`)
        self.carried: str | None = None

    def ask(self, text, end, *, deadline):
        if self.end_after is not None and self.replies >= self.end_after:
            self.ended = self.why = "closed"
            raise SessionEnded("ended", reason="closed", written=self.replies > 0)
        if self.silent:
            self.ended = "timeout"
            raise ExecTimeout("no reply")
        header = text.split("\n", 1)[0] if text else f"{self.carried} (carried)"
        self.asked.append(header)
        ident = int(header.split()[1])
        self.replies += 1
        return "garbage\n" if self.garbled else f"\n--kvc-err-- {ident}\n\n--kvc-end-- {ident} 0\n"

    def close(self, reason="closed by us"):
        self.ended = self.ended or reason


class Executor:
    deadline = 10.0

    def __init__(self, *sessions: Session, refuse: Exception | None = None) -> None:
        self.sessions, self.refuse = list(sessions), refuse
        self.execs: list[list[str]] = []
        self.opened = 0

    def open_session(self, namespace, pod, container, argv, *, suspect=False):
        if self.refuse is not None:
            raise self.refuse
        self.opened += 1
        session = self.sessions.pop(0)
        if len(argv) > 3:  # sh -c SCRIPT kvc ID BODY
            assert argv[3] == "kvc" and argv[5].endswith("\n")
            session.carried = f"kvc {argv[4]} fdb"
        return session

    def run(self, namespace, pod, container, argv, *, stdin=None, suspect=False):
        self.execs.append(argv)
        return ExecResult(0)


def sidecar(executor, sessions=True) -> tuple[Sidecar, Metrics]:
    metrics = Metrics()
    return Sidecar(executor, container="agent", timeout=11, sessions=sessions, metrics=metrics), metrics


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


def test_with_sessions_off_every_request_is_one_exec():
    executor = Executor()
    side, _ = sidecar(executor, sessions=False)
    assert [side.ask(POD, "fdb", FDB)[1], side.ask(POD, "state")[1]] == [1, 1]
    assert executor.opened == 0 and len(executor.execs) == 2


def test_the_first_request_opens_the_session_and_the_next_cost_no_exec():
    session = Session()
    executor = Executor(session)
    side, metrics = sidecar(executor)
    assert [side.ask(POD, "fdb", FDB)[1], side.ask(POD, "links", LINKS, FDB)[1], side.ask(POD, "state")[1]] == [1, 0, 0]
    assert session.asked == ["kvc 1 fdb (carried)", "kvc 2 links", "kvc 3 state"] and executor.execs == []
    assert sample(metrics, "kvc_sessions_open") == 1 and sample(metrics, "kvc_session_requests_total") == 3
    side.close()
    assert sample(metrics, "kvc_sessions_open") == 0
    assert sample(metrics, "kvc_session_ends_total", reason="closed by us") == 1


def test_an_opening_carries_an_fdb_request_of_up_to_carried_max_packed_and_no_other():
    many = "".join(FDB.replace("10.0.0.2", f"10.1.{k // 250}.{k % 250 + 1}") for k in range(400))
    first, second, third = Session(end_after=1), Session(end_after=1), Session()
    side, _ = sidecar(Executor(first, second, third))
    side.ask(POD, "state")
    side.ask(POD, "fdb", many)
    side.ask(POD, "fdb", many[:len(many) // 2])
    assert (first.asked, second.asked, third.asked) == (["kvc 1 state"], ["kvc 3 fdb"], ["kvc 5 fdb (carried)"])
    assert carried("fdb", many) is None and len("".join(packed(many))) > CARRIED_MAX
    assert len(carried("fdb", many[:len(many) // 2])) <= CARRIED_MAX and carried("state") is None


def test_a_session_found_ended_is_replaced_and_the_request_goes_over_the_new_one():
    old, new = Session(end_after=1), Session()
    executor = Executor(old, new)
    side, metrics = sidecar(executor)
    side.ask(POD, "state")
    assert side.ask(POD, "fdb", FDB)[1] == 1, "one exec: the new session"
    assert new.asked == ["kvc 3 fdb (carried)"] and side.fallback is None and executor.execs == []
    assert sample(metrics, "kvc_session_ends_total", reason="closed") == 1 and sample(metrics, "kvc_sessions_open") == 1


def test_a_link_change_whose_session_ended_after_it_was_written_is_not_sent_again():
    class Written(Session):
        def ask(self, text, end, *, deadline):
            if self.replies:
                self.ended = self.why = "broke"
                raise SessionEnded("broke", reason="broke", written=True)
            return super().ask(text, end, deadline=deadline)

    side, _ = sidecar(Executor(Written(), Session()))
    side.ask(POD, "state")
    with pytest.raises(ApiUnavailable, match="before its link change was acknowledged"):
        side.ask(POD, "links", LINKS, FDB)
    assert side.ask(POD, "links", LINKS, FDB)[1] == 1, "the next one opens a new session"


def test_a_session_that_ends_before_its_first_reply_falls_back_to_execs_until_retried():
    executor = Executor(Session(end_after=0), Session())
    side, metrics = sidecar(executor)
    assert side.ask(POD, "fdb", FDB)[1] == 2, "the session that failed, and the exec"
    assert side.ask(POD, "state")[1] == 1 and executor.opened == 1 and len(executor.execs) == 2
    assert "before its first reply" in side.fallback and sample(metrics, "kvc_session_fallbacks_total") == 1
    side.retry()
    assert side.ask(POD, "state")[1] == 1 and executor.opened == 2 and side.fallback is None


@pytest.mark.parametrize("executor", [Executor(refuse=ApiUnavailable("proxy says no")), Executor(Session(garbled=True))])
def test_a_session_that_cannot_be_opened_or_read_falls_back(executor):
    side, _ = sidecar(executor)
    result, _ = side.ask(POD, "fdb", FDB)
    assert result.exit_code == 0 and len(executor.execs) == 1 and side.fallback


@pytest.mark.parametrize("error", [Forbidden("no exec for you"), ExecTimeout("hung")])
def test_errors_that_say_the_pod_cannot_be_reached_propagate(error):
    executor = Executor(refuse=error)
    side, _ = sidecar(executor)
    with pytest.raises(type(error)):
        side.ask(POD, "state")
    assert executor.execs == [] and side.fallback is None


def test_a_reply_that_does_not_come_closes_the_session_and_the_next_request_opens_another():
    executor = Executor(Session(silent=True), Session())
    side, metrics = sidecar(executor)
    with pytest.raises(ExecTimeout):
        side.ask(POD, "state")
    assert side.session is None and sample(metrics, "kvc_session_ends_total", reason="timeout") == 1
    assert side.ask(POD, "state")[1] == 1 and side.fallback is None


def test_reply_end_matches_only_whole_end_lines():
    assert not reply_end(1).search("--kvc-end-- 1 0\n") and reply_end(1).search("x\n--kvc-end-- 1 0\n")
