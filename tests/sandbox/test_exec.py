"""The netns runtime's exec, driven by the official kubernetes client (root only): a minimal aiohttp app
routes the exec URL straight to `serve_exec` with a `NetnsExec` (namespaces joined, the process registry,
disconnects, containers that cannot start). What every runtime must do the same (exit codes, stdin,
protocols, faults) is test_runtime_contract.py's, through the real sandbox.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from apihelpers import TERMINATE_CODES, close, exit_code, host_pid1, open_exec, run, wait_agent_looping
from kubernetes import client as k8s

from kvc_sandbox.containers import ContainerError, ContainerProcess
from kvc_sandbox.execws import serve_exec
from kvc_sandbox.netnsruntime import NetnsExec
from kvc_sandbox.node import NodeNetwork
from polling import wait_for

pytestmark = pytest.mark.root


# -- a minimal exec server in front of serve_exec ------------------------------------------------------
@dataclass
class ExecServer:
    node: NodeNetwork
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> netns
    containers: dict[str, ContainerProcess] = field(default_factory=dict)  # pod name -> its one container
    latency: float = 0.0
    hung: set[str] = field(default_factory=set)
    finished: int = 0  # handlers that returned
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        q = request.query

        def flag(key: str) -> bool:
            return q.get(key, "false").lower() in ("true", "1")

        try:
            return await serve_exec(
                request, container=NetnsExec(self.containers[name], self.node.processes), argv=q.getall("command"),
                stdin=flag("stdin"), stdout=flag("stdout"), stderr=flag("stderr"), latency=self.latency,
                is_hung=lambda: name in self.hung, target=name)
        finally:
            self.finished += 1

    def api(self) -> k8s.CoreV1Api:
        cfg = k8s.Configuration()
        cfg.host = f"http://127.0.0.1:{self.port}"
        return k8s.CoreV1Api(k8s.ApiClient(cfg))


@pytest.fixture
def server():
    node = NodeNetwork(tag="exec")
    srv = ExecServer(node)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def start() -> None:
        for name, netns in srv.pods.items():
            container = srv.containers[name] = ContainerProcess.spawn(netns, name)
            await container.ready()
            state.setdefault("exits", []).append(asyncio.ensure_future(container.wait()))  # reaps it
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}/exec", srv.handle)
        runner = web.AppRunner(app, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        srv.port = site._server.sockets[0].getsockname()[1]
        state["runner"] = runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    async def stop_containers() -> None:
        for container in srv.containers.values():
            container.kill()
        await asyncio.gather(*state.get("exits", []))

    try:
        node.start()
        for name in ("a", "b"):
            srv.pods[name] = node.add_pod(name)[0]
        thread.start()
        assert ready.wait(10)
        yield srv
    finally:
        node.processes.kill_everything()
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop_containers(), loop).result(10)
        if "runner" in state:
            asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        node.stop()


# -- serve_exec through the minimal server -------------------------------------------------------------
def test_command_runs_in_the_pods_network_namespace(server):
    api = server.api()
    out = run(api, "a", ["ip", "-br", "addr", "show", "eth0"])
    assert out.status == {"metadata": {}, "status": "Success"}
    assert "10.66.0.2/32" in out.stdout
    vxlan = ["ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789", "dev", "eth0"]
    assert exit_code(run(api, "a", vxlan).status) == 0
    # The link lives in the pod's namespace, not the host's.
    assert "vx0" in subprocess.run(["ip", "-n", server.pods["a"], "-br", "link"], capture_output=True, text=True).stdout
    assert "vx0" not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def test_exec_into_a_pod_whose_namespace_is_gone_is_an_internal_error(server):
    server.node.remove_pod("b")
    out = run(server.api(), "b", ["true"])
    assert out.status["reason"] == "InternalError" and "container b is not running" in out.status["message"]


def test_commands_run_in_the_containers_pid_namespace_and_see_nothing_of_the_host(server):
    api = server.api()
    before = host_pid1()
    container = server.containers["a"]
    out = run(api, "a", ["sh", "-c", "echo $$"])
    assert exit_code(out.status) == 0 and 1 < int(out.stdout) < 100  # a small pid: not the host's numbering
    # Only the container's own processes are visible: its main process (and its `sleep`), the command.
    out = run(api, "a", ["ps", "-e", "-o", "pid=,comm="])
    seen = {int(pid): comm for pid, comm in (line.split(None, 1) for line in out.stdout.splitlines())}
    assert seen[1] == "sh" and set(seen.values()) <= {"sh", "sleep", "ps"} and len(seen) <= 4, seen
    out = run(api, "a", ["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
    assert int(out.stdout) <= 5
    assert str(container.pid1) not in run(api, "a", ["ls", "/proc"]).stdout.split()
    # KILL to PID 1 from inside its namespace is ignored by the kernel, as in a real container; signals to
    # host pids reach nothing (they do not exist here).
    out = run(api, "a", ["sh", "-c", f"kill -KILL 1; kill -0 {os.getpid()} || echo no-such-pid; echo alive"])
    assert out.stdout == "no-such-pid\nalive\n"
    assert not container.exited and container.enter()
    assert host_pid1() == before


def test_kill_term_1_ends_the_containers_main_process(server):
    api = server.api()
    container = server.containers["a"]
    assert exit_code(run(api, "a", ["kill", "-TERM", "1"]).status) in TERMINATE_CODES
    wait_for(lambda: container.exited, what="the main process to exit")
    out = run(api, "a", ["true"])
    assert out.status["reason"] == "InternalError" and "container a is not running" in out.status["message"]
    assert exit_code(run(api, "b", ["true"]).status) == 0  # the other pod's container is untouched


def test_run_and_tmp_are_the_containers_own(server):
    api = server.api()
    existed = os.path.exists("/run/kvc-exec-test")
    out = run(api, "a", ["sh", "-c", "touch /run/kvc-exec-test /tmp/kvc-exec-test && ls /run /tmp"])
    assert exit_code(out.status) == 0 and out.stdout.count("kvc-exec-test") == 2
    assert os.path.exists("/run/kvc-exec-test") == existed and not os.path.exists("/tmp/kvc-exec-test")
    assert "kvc-exec-test" in run(api, "a", ["ls", "/run"]).stdout  # it stays, in that container
    assert "kvc-exec-test" not in run(api, "b", ["ls", "/run", "/tmp"]).stdout
    assert "/run/netns" not in run(api, "a", ["sh", "-c", "ls -d /run/netns 2>/dev/null"]).stdout


def test_touch_run_terminate_ends_the_agent(server):
    api = server.api()
    container = server.containers["b"]
    wait_agent_looping(api, "b")
    assert exit_code(run(api, "b", ["touch", "/run/terminate"]).status) == 0
    # the agent looks for the file every AGENT_POLL_SECONDS (5 s here): a loaded machine needs more than one look
    wait_for(lambda: container.exited, timeout=15, what="the agent to see /run/terminate")


def test_a_container_that_cannot_start_says_why():
    async def attempt() -> None:
        container = ContainerProcess.spawn("kvcsb-no-such-netns", "x")
        try:
            await container.ready(timeout=5)
        finally:
            assert await container.wait() != 0  # reaped

    with pytest.raises(ContainerError, match="ended before it was ready: nsenter: .*kvcsb-no-such-netns"):
        asyncio.run(attempt())


def test_client_leaving_a_hung_exec_runs_nothing(server):
    api = server.api()
    server.hung.add("a")
    before = server.finished
    resp = open_exec(api, "a", ["ip", "link", "add", "left0", "type", "dummy"])
    resp.run_forever(timeout=0.2)
    close(resp)
    wait_for(lambda: server.finished == before + 1, what="the hung handler to give up")
    server.hung.clear()
    assert "left0" not in run(api, "a", ["ip", "-br", "link"]).stdout


def test_process_outlives_its_client_until_the_pod_is_removed(server):
    api = server.api()
    ns = server.pods["a"]
    resp = open_exec(api, "a", ["sh", "-c", "echo started; exec sleep 300"])
    wait_for(lambda: (resp.update(timeout=0.1), "started" in resp.peek_stdout())[1], what="the command")
    close(resp)
    registry = server.node.processes
    pids = registry.pids(ns)
    assert len(pids) == 1
    time.sleep(0.3)  # give a (wrong) kill on disconnect the chance to happen: it must not
    assert registry.pids(ns) == pids and os.path.exists(f"/proc/{pids[0]}")
    server.node.remove_pod("a")
    wait_for(lambda: not os.path.exists(f"/proc/{pids[0]}") or
             Path(f"/proc/{pids[0]}/stat").read_text().split()[2] == "Z", what="the process to die")
    assert registry.count(ns) == 0


def test_exec_overhead(server):
    """Prints what joining the container (nsenter) and the websocket add to a bare `ip netns exec`."""
    api = server.api()
    ns = server.pods["a"]
    pid1 = server.containers["a"].pid1
    n = 30
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(["ip", "netns", "exec", ns, "true"], check=True)
    bare = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(["nsenter", f"--target={pid1}", "--pid", "--mount", "--net", "--", "true"], check=True)
    joined = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        assert exit_code(run(api, "a", ["true"]).status) == 0
    ws = (time.perf_counter() - t) / n
    print(f"exec of `true`: ip netns exec {bare * 1000:.1f} ms, nsenter into the container {joined * 1000:.1f} ms, "
          f"whole websocket exec {ws * 1000:.1f} ms")
    assert ws < 1.0


def test_many_concurrent_execs_all_complete(server):
    """One ApiClient per thread (`stream()` is not thread-safe); prints the throughput."""
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def one(i: int) -> str:
        if not hasattr(local, "api"):
            local.api = server.api()
        out = run(local.api, "ab"[i % 2], ["sh", "-c", f"echo {i}"])
        assert exit_code(out.status) == 0, out
        return out.stdout.strip()

    n = 200
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - start
    print(f"{n} execs from 16 threads: {n / elapsed:.0f} execs/s")
    assert results == [str(i) for i in range(n)]
