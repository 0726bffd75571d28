"""Pod exec over websocket, driven by the official kubernetes client (root only).

Two servers: a minimal aiohttp app that routes the exec URL straight to `serve_exec` (protocol details,
disconnects, the process registry), and the real `Sandbox` (what the controller will see).

What the official client (kubernetes 37) does with each outcome, pinned here:
- exit 0 → `returncode` 0; exit N → `returncode` N;
- a binary that cannot start → a Failure Status with reason InternalError; `returncode` raises ValueError
  (it does `int()` of the cause's message), so callers must read channel 3 themselves or wrap it;
- a command still running after `run_forever(timeout)` → `returncode` None (`is_open()` True).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from apihelpers import AGENT, AGENT_INIT, TERMINATE_CODES, pod_manifest
from kubernetes import client as k8s
from kubernetes.stream import stream

from kvc_sandbox.containers import ContainerError, ContainerProcess
from kvc_sandbox.execws import serve_exec
from kvc_sandbox.netnsruntime import NetnsExec
from kvc_sandbox.node import NodeNetwork
from polling import wait_for

pytestmark = pytest.mark.root


# -- helpers -------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    stdout: str
    stderr: str
    status: dict | None  # channel 3, parsed; None while the command runs
    elapsed: float


def open_exec(api: k8s.CoreV1Api, pod: str, argv: list[str], *, container: str = "c", stdin: bool = False,
              protocol: str | None = None, namespace: str = "default"):
    extra = {"_headers": {"sec-websocket-protocol": protocol}} if protocol else {}
    return stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=argv, container=container,
                  stdin=stdin, stdout=True, stderr=True, tty=False, _preload_content=False, **extra)


def close(resp) -> None:
    """`resp.close()` alone leaks the socket when the server closed first (websocket-client marks the
    connection closed when it answers the server's close frame, and `close()` then returns early)."""
    resp.close()
    resp.sock.shutdown()


def finish(resp, timeout: float, start: float) -> Outcome:
    resp.run_forever(timeout=timeout)
    raw = resp.read_channel(3, timeout=0) if not resp.is_open() else ""
    out = Outcome(resp.read_stdout(timeout=0), resp.read_stderr(timeout=0),
                  json.loads(raw) if raw else None, time.monotonic() - start)
    return out


def run(api, pod, argv, *, timeout: float = 10.0, stdin_data: str | None = None, close_stdin: bool = True,
        **kw) -> Outcome:
    start = time.monotonic()
    resp = open_exec(api, pod, argv, stdin=stdin_data is not None, **kw)
    try:
        if stdin_data is not None:
            resp.write_stdin(stdin_data)
            if close_stdin:
                resp.close_channel(0)
        return finish(resp, timeout, start)
    finally:
        close(resp)


def exit_code(status: dict | None) -> int | None:
    if status is None:
        return None
    if status["status"] == "Success":
        return 0
    return int(status["details"]["causes"][0]["message"])


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
    assert "10.66.0.2/16" in out.stdout


def test_exit_code_and_stderr_in_the_api_servers_status_format(server):
    api = server.api()
    out = run(api, "a", ["sh", "-c", "echo out; echo oops >&2; exit 3"])
    assert (out.stdout, out.stderr) == ("out\n", "oops\n")
    assert out.status == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
                   "[sh -c echo out; echo oops >&2; exit 3], exit code 3",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    resp = open_exec(api, "a", ["sh", "-c", "exit 3"])
    try:
        resp.run_forever(timeout=10)
        assert resp.returncode == 3
    finally:
        close(resp)


def test_missing_binary_is_an_internal_error_like_containerds(server):
    api = server.api()
    out = run(api, "a", ["nosuch", "arg"])
    assert out.status["status"] == "Failure" and out.status["reason"] == "InternalError"
    assert out.status["message"].endswith(
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuch": '
        'executable file not found in $PATH: unknown')
    resp = open_exec(api, "a", ["/no/such/tool"])
    try:
        resp.run_forever(timeout=10)
        with pytest.raises(ValueError):  # what the official client does with it
            resp.returncode
    finally:
        close(resp)


def test_exec_into_a_pod_whose_namespace_is_gone_is_an_internal_error(server):
    server.node.remove_pod("b")
    out = run(server.api(), "b", ["true"])
    assert out.status["reason"] == "InternalError" and "container b is not running" in out.status["message"]


def test_stdin_feeds_bridge_batch_and_v5_close_is_eof(server):
    api = server.api()
    ns = server.pods["a"]
    vxlan = ["ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789", "dev", "eth0"]
    setup = run(api, "a", vxlan)
    assert exit_code(setup.status) == 0, setup
    batch = "".join(f"fdb append 00:00:00:00:00:00 dev vx0 dst 10.66.0.{i}\n" for i in (7, 8, 9))
    out = run(api, "a", ["bridge", "-batch", "-"], stdin_data=batch)
    assert exit_code(out.status) == 0, out
    fdb = json.loads(run(api, "a", ["bridge", "-j", "fdb", "show", "dev", "vx0"]).stdout)
    zeros = sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00")
    assert zeros == ["10.66.0.7", "10.66.0.8", "10.66.0.9"]
    # The link lives in the pod's namespace, not the host's.
    assert "vx0" in subprocess.run(["ip", "-n", ns, "-br", "link"], capture_output=True, text=True).stdout
    assert "vx0" not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def test_v4_has_no_stdin_eof_but_both_protocols_stream_output(server):
    api = server.api()
    out = run(api, "a", ["cat"], stdin_data="hello\n", protocol="v4.channel.k8s.io", timeout=1.0)
    assert out.status is None and out.stdout == "hello\n"  # cat still waits for the EOF v4 cannot send
    out = run(api, "a", ["cat"], stdin_data="hello\n", protocol="v5.channel.k8s.io")
    assert exit_code(out.status) == 0 and out.stdout == "hello\n"
    out = run(api, "a", ["sh", "-c", "exit 4"], protocol="v4.channel.k8s.io")
    assert exit_code(out.status) == 4


def test_unversioned_channel_protocol_gets_plain_text_errors(server):
    api = server.api()
    resp = open_exec(api, "a", ["sh", "-c", "echo hi; exit 4"], protocol="channel.k8s.io")
    try:
        resp.run_forever(timeout=10)
        assert resp.read_stdout(timeout=0) == "hi\n"
        assert resp.read_channel(3, timeout=0) == "command terminated with exit code 4"
    finally:
        close(resp)


def host_pid1() -> tuple:
    return os.stat("/proc/1").st_ctime, Path("/proc/1/cmdline").read_bytes(), Path("/proc/1/stat").read_text().split()[21]


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
    assert exit_code(run(api, "b", ["touch", "/run/terminate"]).status) == 0
    wait_for(lambda: container.exited, timeout=5, what="the agent to see /run/terminate")


def test_a_container_that_cannot_start_says_why():
    async def attempt() -> None:
        container = ContainerProcess.spawn("kvcsb-no-such-netns", "x")
        try:
            await container.ready(timeout=5)
        finally:
            assert await container.wait() != 0  # reaped

    with pytest.raises(ContainerError, match="ended before it was ready: nsenter: .*kvcsb-no-such-netns"):
        asyncio.run(attempt())


def test_latency_delays_the_exec(server):
    api = server.api()
    server.latency = 0.6
    out = run(api, "a", ["true"])
    assert exit_code(out.status) == 0 and out.elapsed >= 0.6


def test_hung_pod_answers_nothing_until_lifted_while_others_answer(server):
    api = server.api()
    server.hung.add("a")
    start = time.monotonic()
    hung = open_exec(api, "a", ["echo", "late"])
    try:
        hung.run_forever(timeout=0.5)
        assert hung.is_open() and hung.returncode is None
        assert exit_code(run(api, "b", ["true"], timeout=5).status) == 0
        server.hung.clear()
        out = finish(hung, 10, start)
        assert exit_code(out.status) == 0 and out.stdout == "late\n"
    finally:
        close(hung)


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


def test_large_output_streams_whole(server):
    api = server.api()
    out = run(api, "a", ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"])
    assert exit_code(out.status) == 0 and len(out.stdout) == 3_000_000


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


# -- the same through the real Sandbox: what the controller sees ---------------------------------------
def sandbox_pod(core, name: str, labels: dict | None = None, init: list[str] | None = None) -> str:
    """Create a pod with the sidecar agent (and these init containers); wait until the first runs."""
    core.create_namespaced_pod("default", pod_manifest(name, labels=labels, init=init or [],
                                                       containers=[AGENT]))

    def started() -> bool:
        status = core.read_namespaced_pod(name, "default").status
        return any(s.state.running for s in (status.init_container_statuses if init else
                                             status.container_statuses) or [])

    wait_for(started, what=f"pod {name} to run its first container")
    return name


def test_sandbox_exec_exit_codes_stderr_and_missing_binary(sandbox, core):
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["sh", "-c", "ip -br addr show eth0; echo bad >&2"], container=AGENT)
    assert exit_code(out.status) == 0 and "eth0" in out.stdout and out.stderr == "bad\n"
    assert exit_code(run(core, pod, ["sh", "-c", "exit 3"], container=AGENT).status) == 3
    missing = run(core, pod, ["nosuch"], container=AGENT).status
    assert missing["reason"] == "InternalError" and "executable file not found in $PATH" in missing["message"]


def test_sandbox_exec_stdin_feeds_bridge_batch_under_v5(sandbox, core):
    pod = sandbox_pod(core, "p")
    run(core, pod, ["ip", "link", "add", "vxeth0", "type", "vxlan", "id", "100", "dev", "eth0", "dstport",
                    "4789"], container=AGENT)
    batch = "fdb append 00:00:00:00:00:00 dev vxeth0 dst 10.66.0.50\n" \
            "fdb append 00:00:00:00:00:00 dev vxeth0 dst 10.66.0.51\n"
    out = run(core, pod, ["bridge", "-batch", "-"], stdin_data=batch, container=AGENT)
    assert exit_code(out.status) == 0, out
    fdb = run(core, pod, ["bridge", "fdb", "show", "dev", "vxeth0"], container=AGENT).stdout
    assert "dst 10.66.0.50" in fdb and "dst 10.66.0.51" in fdb


def test_sandbox_exec_latency_fault_delays_every_exec(sandbox, core):
    pod = sandbox_pod(core, "p")
    sandbox.faults.set_exec_latency(0.5)
    out = run(core, pod, ["true"], container=AGENT)
    assert exit_code(out.status) == 0 and out.elapsed >= 0.5
    sandbox.faults.set_exec_latency(0)
    assert run(core, pod, ["true"], container=AGENT).elapsed < 0.5


def test_sandbox_hang_fault_holds_matching_pods_only_until_lifted(sandbox, core):
    hung_pod = sandbox_pod(core, "hung", labels={"app": "hang"})
    other = sandbox_pod(core, "other", labels={"app": "fine"})
    sandbox.faults.hang_execs("app=hang")
    start = time.monotonic()
    resp = open_exec(core, hung_pod, ["echo", "late"], container=AGENT)
    try:
        resp.run_forever(timeout=0.5)
        assert resp.is_open() and resp.returncode is None
        assert exit_code(run(core, other, ["true"], container=AGENT, timeout=5).status) == 0
        sandbox.faults.lift_hangs()
        out = finish(resp, 10, start)
        assert exit_code(out.status) == 0 and out.stdout == "late\n"
    finally:
        close(resp)


def init_agent_state(core, pod: str):
    return core.read_namespaced_pod(pod, "default").status.init_container_statuses[0].state


def test_sandbox_kill_term_1_ends_the_container_and_nothing_of_the_host(sandbox, core):
    before = host_pid1()
    pod = sandbox_pod(core, "p", init=[AGENT_INIT])
    assert 1 < int(run(core, pod, ["sh", "-c", "echo $$"], container=AGENT_INIT).stdout) < 100
    # No argv is special: `kill -TERM 1` inside a shell signals the container's main process, which exits 0.
    assert exit_code(run(core, pod, ["sh", "-c", "kill -TERM 1"], container=AGENT_INIT).status) in TERMINATE_CODES
    wait_for(lambda: core.read_namespaced_pod(pod, "default").status.phase == "Running", what="Running")
    terminated = init_agent_state(core, pod).terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert host_pid1() == before


def test_sandbox_touch_run_terminate_ends_the_agent_in_its_own_run_only(sandbox, core):
    existed = os.path.exists("/run/terminate")
    pod = sandbox_pod(core, "old-agent", init=[AGENT_INIT])
    assert exit_code(run(core, pod, ["sh", "-c", "touch /run/terminate"], container=AGENT_INIT).status) == 0
    assert os.path.exists("/run/terminate") == existed  # written in the container's /run, not the host's
    wait_for(lambda: core.read_namespaced_pod(pod, "default").status.phase == "Running", what="Running")
    assert init_agent_state(core, pod).terminated.exit_code == 0
    # The sidecar agent has a /run of its own: no terminate file there, it keeps running.
    assert exit_code(run(core, pod, ["ls", "/run/terminate"], container=AGENT).status) != 0


def test_sandbox_touch_and_term_in_one_exec_release_the_init_agent(sandbox, core):
    pod = sandbox_pod(core, "p", init=[AGENT_INIT])
    start = time.monotonic()
    out = run(core, pod, ["sh", "-c", "touch /run/terminate; kill -TERM 1"], container=AGENT_INIT)
    assert exit_code(out.status) in TERMINATE_CODES, out
    wait_for(lambda: core.read_namespaced_pod(pod, "default").status.phase == "Running", what="Running")
    assert time.monotonic() - start < 4.0  # TERM, not the agent's look for the file every 5 s
    assert init_agent_state(core, pod).terminated.exit_code == 0


def test_sandbox_container_sees_only_its_own_processes(sandbox, core):
    before = host_pid1()
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["ps", "-e", "-o", "pid=,comm="], container=AGENT)
    seen = {int(pid): comm for pid, comm in (line.split(None, 1) for line in out.stdout.splitlines())}
    assert seen[1] == "sh" and set(seen.values()) <= {"sh", "sleep", "ps"} and len(seen) <= 4, seen
    # Signals to host pids reach nothing from in there; KILL to its own PID 1 is ignored (as in a real one).
    out = run(core, pod, ["sh", "-c", f"kill -TERM {os.getpid()} || echo refused; kill -KILL 1; echo alive"],
              container=AGENT)
    assert out.stdout == "refused\nalive\n"
    assert core.read_namespaced_pod(pod, "default").status.container_statuses[0].restart_count == 0
    assert host_pid1() == before


def test_sandbox_main_process_killed_from_outside_is_an_error_then_restarted(sandbox, core):
    pod = sandbox_pod(core, "p")
    container = sandbox.kubelet.runtime("default", pod).container(AGENT)
    os.kill(container.instance.process.pid1, 9)

    def restarted():
        status = core.read_namespaced_pod(pod, "default").status.container_statuses[0]
        return status.restart_count == 1 and status.state.running and status

    status = wait_for(restarted, what="the restart")
    # 137 where `unshare` passes its child's death by signal on (util-linux 2.39+), 1 with older ones
    assert status.last_state.terminated.exit_code in (1, 137) and status.last_state.terminated.reason == "Error"
    assert exit_code(run(core, pod, ["true"], container=AGENT).status) == 0


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
