"""Executor against the sandbox: commands really run in the pods' network namespaces (root)."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.k8s.errors import ExecTimeout, PodGone
from kube_vxlan_controller.k8s.execs import EXEC_FAILED, Executor
from kube_vxlan_controller.k8s.pods import AGENT_CONTAINER, INIT_AGENT_CONTAINER

pytestmark = pytest.mark.root

INIT = INIT_AGENT_CONTAINER


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def __call__(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.seen.append((outcome, seconds))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.seen]


def test_exit_code_stdout_and_stderr(cluster, running_pod):
    running_pod("p1")
    outcomes = Outcomes()
    executor = Executor(cluster, observer=outcomes)
    result = executor.run("default", "p1", INIT, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert executor.run("default", "p1", INIT, ["true"]).ok
    assert outcomes.names() == ["nonzero", "ok"]


def test_an_exit_code_the_caller_expects_counts_ok_so_a_release_is_not_nonzero(cluster, running_pod):
    running_pod("p1")
    outcomes = Outcomes()
    executor = Executor(cluster, observer=outcomes)
    # 137: what a release exits with when the agent, PID 1, takes the exec'd shell with it
    assert executor.run("default", "p1", INIT, ["sh", "-c", "exit 137"], ok=agent.RELEASED_CODES).exit_code == 137
    assert executor.run("default", "p1", INIT, ["sh", "-c", "exit 3"], ok=agent.RELEASED_CODES).exit_code == 3
    released = executor.run("default", "p1", INIT, agent.release_argv("/run/terminate"), ok=agent.RELEASED_CODES)
    assert released.exit_code in agent.RELEASED_CODES
    assert outcomes.names() == ["ok", "nonzero", "ok"]


def test_command_runs_in_the_pods_own_network_namespace(sandbox, cluster, running_pod):
    running_pod("p1")
    ip = sandbox.pod("default", "p1")["status"]["podIP"]
    result = Executor(cluster).run("default", "p1", INIT, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
    assert result.ok and f" {ip}/" in result.stdout


def test_stdin_feeds_bridge_batch_and_the_kernel_holds_the_entries(sandbox, cluster, running_pod):
    running_pod("p1")
    executor = Executor(cluster)
    link = executor.run("default", "p1", INIT, ["ip", "link", "add", "vxt0", "type", "vxlan", "id", "100",
                                                 "dev", "eth0", "dstport", "4789", "nolearning"])
    assert link.ok, link.stderr
    batch = "".join(f"fdb append 00:00:00:00:00:00 dev vxt0 dst 10.66.9.{i}\n" for i in (1, 2, 3))
    result = executor.run("default", "p1", INIT, ["bridge", "-batch", "-"], stdin=batch)
    assert result.ok, result.stderr
    shown = subprocess.run(["ip", "netns", "exec", sandbox.pod_netns("default", "p1"), "bridge", "fdb", "show",
                            "dev", "vxt0"], capture_output=True, text=True, check=True).stdout
    assert {f"10.66.9.{i}" for i in (1, 2, 3)} <= {word for word in shown.split()}


def test_large_output_arrives_whole(cluster, running_pod):
    running_pod("p1")
    result = Executor(cluster).run("default", "p1", INIT, ["sh", "-c", "seq 1 50000"])
    assert result.ok
    assert result.stdout.splitlines() == [str(i) for i in range(1, 50001)]


def test_missing_binary_is_exec_failed_with_the_runtimes_message(cluster, running_pod):
    running_pod("p1")
    result = Executor(cluster).run("default", "p1", INIT, ["no-such-binary"])
    assert result.exit_code == EXEC_FAILED
    assert "no-such-binary" in result.stderr


def test_missing_pod_is_pod_gone(cluster, running_pod):
    outcomes = Outcomes()
    with pytest.raises(PodGone, match="nope"):
        Executor(cluster, observer=outcomes).run("default", "nope", INIT, ["true"])
    assert outcomes.names() == ["gone"]


def test_missing_container_is_pod_gone(cluster, running_pod):
    running_pod("p1")
    with pytest.raises(PodGone, match="no-such-container"):
        Executor(cluster).run("default", "p1", "no-such-container", ["true"])


def test_terminated_init_agent_is_pod_gone(sandbox, cluster, running_pod):
    running_pod("p1")
    executor = Executor(cluster)
    executor.run("default", "p1", INIT, ["kill", "-TERM", "1"])
    sandbox.wait_pod("default", "p1", lambda p: any(
        s["name"] == AGENT_CONTAINER and "running" in s["state"] for s in p["status"].get("containerStatuses") or ()))
    with pytest.raises(PodGone):
        executor.run("default", "p1", INIT, ["true"])
    assert executor.run("default", "p1", AGENT_CONTAINER, ["true"]).ok


def test_hung_pod_times_out_after_its_deadline_while_other_pods_keep_working(sandbox, cluster, running_pod):
    running_pod("stuck", labels={"app": "x", "hang": "yes"})
    running_pod("fine")
    outcomes = Outcomes()
    executor = Executor(cluster, deadline=1.0, observer=outcomes)
    sandbox.faults.hang_execs("hang=yes")
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        stuck = pool.submit(executor.run, "default", "stuck", INIT, ["true"])
        others = []
        while not stuck.done():
            t0 = time.monotonic()
            assert executor.run("default", "fine", INIT, ["true"]).ok
            others.append(time.monotonic() - t0)
        with pytest.raises(ExecTimeout):
            stuck.result()
        waited = time.monotonic() - started
    assert 0.9 <= waited < 2.5
    assert len(others) >= 5 and max(others) < 0.5
    assert "timeout" in outcomes.names()
    sandbox.faults.lift_hangs()
    assert executor.run("default", "stuck", INIT, ["true"]).ok


def test_per_call_deadline_overrides_the_default_and_a_timeout_frees_its_slot(sandbox, cluster, running_pod):
    running_pod("stuck", labels={"app": "x", "hang": "yes"})
    running_pod("fine")
    sandbox.faults.hang_execs("hang=yes")
    executor = Executor(cluster, deadline=30.0, max_concurrent=1)
    started = time.monotonic()
    with pytest.raises(ExecTimeout):
        executor.run("default", "stuck", INIT, ["true"], deadline=0.5)
    assert time.monotonic() - started < 1.5
    assert executor.run("default", "fine", INIT, ["true"], deadline=2).ok


def test_waiting_for_a_slot_does_not_count_toward_the_deadline(sandbox, cluster, running_pod):
    running_pod("p1")
    sandbox.faults.set_exec_latency(0.4)
    executor = Executor(cluster, deadline=0.8, max_concurrent=1)
    with ThreadPoolExecutor(3) as pool:
        started = time.monotonic()
        results = list(pool.map(lambda _: executor.run("default", "p1", INIT, ["true"]), range(3)))
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results)  # the last waited ~0.8 s for its slot, longer than its deadline
    assert elapsed >= 1.2  # one at a time


def test_concurrent_execs_from_many_threads_all_succeed(cluster, running_pod):
    running_pod("p1")
    running_pod("p2")
    executor = Executor(cluster, max_concurrent=8)

    def one(i: int) -> str:
        pod = f"p{1 + i % 2}"
        return executor.run("default", pod, INIT, ["echo", str(i)]).stdout

    with ThreadPoolExecutor(16) as pool:
        outputs = list(pool.map(one, range(200)))
    assert outputs == [f"{i}\n" for i in range(200)]


def test_a_timed_out_exec_is_abandoned_so_it_never_runs_late(sandbox, cluster, running_pod):
    """The websocket is closed on timeout: once the hang lifts, the server finds the client gone and
    does not run the command (a leaked connection would run it now, long after the caller gave up)."""
    running_pod("stuck", labels={"app": "x", "hang": "yes"})
    netns = sandbox.pod_netns("default", "stuck")
    sandbox.faults.hang_execs("hang=yes")
    with pytest.raises(ExecTimeout):
        Executor(cluster, deadline=0.3).run("default", "stuck", INIT, ["ip", "link", "add", "late0", "type", "vxlan",
                                                                      "id", "7", "dev", "eth0", "dstport", "4789"])
    sandbox.faults.lift_hangs()
    assert Executor(cluster).run("default", "stuck", INIT, ["true"]).ok
    window = time.monotonic() + 0.5  # ten of the sandbox's hang polls
    while time.monotonic() < window:
        shown = subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "show", "late0"], capture_output=True)
        assert shown.returncode != 0, "the abandoned exec ran after all"
        time.sleep(0.05)
