"""Sessions against the sandbox (into the init agent, which runs as soon as the pod does; the sidecar's
container is nothing special to a session): one long-lived exec per pod, with the session script of agentsession, the
sidecar's policy (reopen, fall back), and the sandbox's faults (severed streams, a hung pod, a command
that cannot start). Commands really run in the pods' network namespaces (root)."""

from __future__ import annotations

import re
import socket
import time

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.agentsession import carried, parse_reply, reply_end, request, session_argv
from kube_vxlan_controller.k8s.errors import ExecTimeout, LeaseEnding
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.pods import INIT_AGENT_CONTAINER as CONTAINER
from kube_vxlan_controller.k8s.sessions import SessionEnded
from kube_vxlan_controller.metrics import Metrics
from kube_vxlan_controller.model import Pod
from kube_vxlan_controller.sidecar import Sidecar
from polling import wait_for

pytestmark = pytest.mark.root

LINK = "link add vxs0 type vxlan id 7 dev eth0 dstport 4789\nlink set vxs0 up\n"
PEER = "fdb append 00:00:00:00:00:00 dev vxs0 dst 10.9.0.{}\n"


def ask(session, ident: int, kind: str, *bodies: str, deadline: float = 5.0):
    return parse_reply(ident, session.ask(request(ident, kind, *bodies), reply_end(ident), deadline=deadline))


def test_a_session_carries_requests_in_order_with_their_results(sandbox, cluster, running_pod):
    running_pod("p1")
    executor = Executor(cluster)
    session = executor.open_session("default", "p1", CONTAINER, session_argv(5))
    try:
        assert ask(session, 1, "links", LINK, PEER.format(2)).exit_code == 0
        assert ask(session, 2, "fdb", PEER.format(3)).exit_code == 0
        failed = ask(session, 3, "links", "link add vxs0 type vxlan id 7 dev eth0 dstport 4789\n", "")
        assert failed.exit_code != 0 and "File exists" in failed.stderr
        state = agent.parse_state(ask(session, 4, "state").stdout)
        assert state.fdb["vxs0"] == {"10.9.0.2", "10.9.0.3"} and state.links["vxs0"].vni == 7
        assert session.replies == 4 and session.ended is None
    finally:
        session.close()
    # one exec for the whole session; its requests are in the exec log's stdin, in order
    [opened] = [e for e in sandbox.execs() if e["pod"] == "p1"]
    assert [line.split()[2] for line in opened["stdin"].splitlines() if line.startswith("kvc ")] == \
        ["links", "fdb", "links", "state"]
    assert session.ended == "closed by us"


def test_a_severed_session_ends_and_the_sidecar_reopens_it_for_the_next_request(sandbox, cluster, running_pod):
    running_pod("p1", labels={"run": "p1"})
    metrics = Metrics()
    sidecar = Sidecar(Executor(cluster), container=CONTAINER, timeout=5, sessions=True, metrics=metrics)
    pod = Pod(uid="u", namespace="default", name="p1")
    try:
        assert sidecar.ask(pod, "links", LINK, PEER.format(2))[1] == 1  # opened: one exec
        assert sidecar.ask(pod, "fdb", PEER.format(3))[1] == 0
        first = sidecar.session
        sandbox.faults.sever_execs("run=p1")
        # wait until the server has closed the stream: a request written while the close is on its way can
        # meet a reset instead ("broke", written; tests/unit/test_sidecar.py covers what the sidecar does then)
        wait_for(lambda: not sandbox.live_execs(), timeout=10, what="the severed session's command ended")
        result, execs = sidecar.ask(pod, "fdb", PEER.format(4))
        assert (result.exit_code, execs) == (0, 1), "found ended, reopened at once, the request went over it"
        assert first.ended == "closed" and sidecar.session is not first and sidecar.fallback is None
        assert metrics.registry.get_sample_value("kvc_session_ends_total", {"reason": "closed"}) == 1
        assert metrics.registry.get_sample_value("kvc_sessions_open") == 1
        state = agent.parse_state(sidecar.ask(pod, "state")[0].stdout)
        assert state.fdb["vxs0"] == {"10.9.0.2", "10.9.0.3", "10.9.0.4"}
    finally:
        sidecar.close()
    assert metrics.registry.get_sample_value("kvc_sessions_open") == 0


def test_a_session_that_cannot_start_falls_back_to_one_exec_per_request_until_retried(sandbox, cluster,
                                                                                       running_pod):
    running_pod("p1", labels={"run": "p1"})
    metrics = Metrics()
    sidecar = Sidecar(Executor(cluster), container=CONTAINER, timeout=5, sessions=True, metrics=metrics)
    pod = Pod(uid="u", namespace="default", name="p1")
    sandbox.faults.break_commands("run=p1", "--kvc-end--")  # an agent image that cannot run the session
    try:
        result, execs = sidecar.ask(pod, "links", LINK, PEER.format(2))
        assert (result.exit_code, execs) == (0, 2), "the session failed (one exec); the request went as one more"
        assert "ended before its first reply" in sidecar.fallback and "executable file not found" in sidecar.fallback
        assert sidecar.ask(pod, "fdb", PEER.format(3))[1] == 1, "and so does the next one, no session tried"
        assert metrics.registry.get_sample_value("kvc_session_fallbacks_total") == 1
        sandbox.faults.mend_commands()
        sidecar.retry()
        assert sidecar.ask(pod, "fdb", PEER.format(4))[1] == 1  # a session again: opened
        assert sidecar.ask(pod, "state")[1] == 0 and sidecar.fallback is None
    finally:
        sidecar.close()
    kinds = [e["argv"][0] if e["argv"][:2] != ["sh", "-c"] or "--kvc-end--" not in e["argv"][2] else "session"
             for e in sandbox.execs() if e["pod"] == "p1"]
    assert kinds == ["session", "timeout", "timeout", "session"]


def test_a_hung_pod_stalls_its_session_and_the_reply_times_out(sandbox, cluster, running_pod):
    running_pod("p1", labels={"run": "p1"})
    executor = Executor(cluster, deadline=1.0)
    session = executor.open_session("default", "p1", CONTAINER, session_argv(2))
    assert ask(session, 1, "state").exit_code == 0
    sandbox.faults.hang_execs("run=p1")
    try:
        started = time.monotonic()
        with pytest.raises(ExecTimeout):
            ask(session, 2, "state", deadline=1.0)
        assert 1.0 <= time.monotonic() - started < 5
        assert session.ended == "timeout"
        with pytest.raises(SessionEnded):
            ask(session, 3, "state")
    finally:
        sandbox.faults.lift_hangs()
        session.close()


def test_a_deposed_leader_writes_nothing_into_a_session_and_closes_it_once_its_fence_passed(sandbox, cluster,
                                                                                            running_pod):
    running_pod("p1")
    fence = [time.monotonic() + 60]
    executor = Executor(cluster, fence=lambda: fence[0])
    session = executor.open_session("default", "p1", CONTAINER, session_argv(5))
    try:
        assert ask(session, 1, "state").exit_code == 0
        fence[0] = time.monotonic() + 2  # the Lease is no longer renewed: a 5 s reply could come too late
        with pytest.raises(LeaseEnding):
            ask(session, 2, "fdb", PEER.format(2))
        assert session.ended is None, "nothing written, the session stays until the fence"
        wait_for(lambda: session.ended == "fenced" and not sandbox.live_execs(), timeout=10,
                 what="the session closed at the fence and its command ended in the pod")
        assert time.monotonic() >= fence[0]
        with pytest.raises((LeaseEnding, SessionEnded)):
            ask(session, 3, "state")
    finally:
        session.close()
    [opened] = [e for e in sandbox.execs() if e["pod"] == "p1"]
    assert re.findall(r"kvc \d+ \w+", opened["stdin"]) == ["kvc 1 state"]


def test_a_request_the_opening_carried_is_answered_though_the_fence_came_near_since(sandbox, cluster,
                                                                                    running_pod):
    running_pod("p1")
    fence = [time.monotonic() + 60]
    executor = Executor(cluster, fence=lambda: fence[0])
    netns_link = executor.run("default", "p1", CONTAINER, ["ip", "-batch", "-"], stdin=LINK)
    assert netns_link.exit_code == 0, netns_link.stderr
    session = executor.open_session("default", "p1", CONTAINER, session_argv(5, (1, carried("fdb", PEER.format(2)))))
    try:
        fence[0] = time.monotonic() + 2  # admitted when it was opened; a new request now would not be
        assert parse_reply(1, session.ask("", reply_end(1), deadline=5)).exit_code == 0
        with pytest.raises(LeaseEnding):
            ask(session, 2, "state")
    finally:
        session.close()
    [_, opened] = [e for e in sandbox.execs() if e["pod"] == "p1"]
    assert opened["argv"][3:] == ["kvc", "1", "append vxs0 10.9.0.2\n"] and opened["stdin"] == ""


def test_a_session_whose_client_left_ends_in_the_pod(sandbox, cluster, running_pod):
    running_pod("p1")
    session = Executor(cluster).open_session("default", "p1", CONTAINER, session_argv(5))
    assert ask(session, 1, "state").exit_code == 0
    session.close()
    wait_for(lambda: not sandbox.live_execs(), timeout=10, what="the session's command ended in the pod")


def test_a_session_keeps_tcp_alive_as_client_go_does_not_as_websocket_client_would(sandbox, cluster, running_pod):
    """Idle for minutes between requests, a session must not be dropped for three lost keepalive probes
    (websocket-client's default: 30 s, then every 10 s, 3 probes); client-go's dialer: 30 s, 30 s, 9."""
    running_pod("p1")
    session = Executor(cluster).open_session("default", "p1", CONTAINER, session_argv(5))
    try:
        raw = session._ws.sock.sock
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert [raw.getsockopt(socket.IPPROTO_TCP, option) for option in
                (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)] == [30, 30, 9]
        assert ask(session, 1, "state").exit_code == 0
    finally:
        session.close()
