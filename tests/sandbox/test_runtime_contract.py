"""One contract, two runtimes: what the controller (and kubectl) rely on of pod exec and of the kubelet —
exit codes, stdin, protocols, faults, container starts, restarts, statuses, deletion — through the
sandbox's API, on the netns runtime and on the docker runtime (root; docker skips, saying why, when no
engine answers). Only what a runtime is made of differs: the helpers under "what holds a pod" say how.

What the official client (kubernetes 37) does with each outcome, pinned here:
- exit 0 → `returncode` 0; exit N → `returncode` N;
- a binary that cannot start → a Failure Status with reason InternalError; `returncode` raises ValueError
  (it does `int()` of the cause's message), so callers must read channel 3 themselves or wrap it;
- a command still running after `run_forever(timeout)` → `returncode` None (`is_open()` True).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time

import pytest
from apihelpers import (AGENT, AGENT_IMAGE, AGENT_INIT, TERMINATE_CODES, close, exit_code, finish, host_pid1,
                        netns_names, open_exec, pod_manifest, run, wait_agent_looping)
from kubernetes import watch
from kubernetes.client.rest import ApiException
from polling import wait_for
from runtimes import RUNTIMES, docker_client, docker_containers, sandbox_on

pytestmark = pytest.mark.root

RELEASE = ["sh", "-c", "touch /run/terminate; kill -TERM 1"]


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    return request.param


@pytest.fixture
def sandbox(runtime, tmp_path):
    yield from sandbox_on(runtime, tmp_path)


# -- what holds a pod, per runtime -----------------------------------------------------------------------
CONTAINER_ID_PREFIX = {"netns": "containerd://", "docker": "docker://"}


def held_by(sandbox, runtime: str, pod: str) -> set[str]:
    """What holds a live pod on this machine: its network namespace (netns), its containers (docker)."""
    if runtime == "netns":
        return {sandbox.pod_netns("default", pod)}
    uid = sandbox.pod("default", pod)["metadata"]["uid"]
    return {c["Id"] for c in docker_containers(f"kvcsb.pod={uid}")}


def still_there(runtime: str, things: set[str]) -> set[str]:
    if runtime == "netns":
        return things & netns_names()
    with docker_client() as client:
        return things & {c["Id"] for c in client.api.containers(all=True)}


def kill_from_outside(sandbox, runtime: str, pod: str, container: str) -> None:
    """SIGKILL the container's main process, as the OOM killer or an operator would."""
    instance = sandbox.kubelet.runtime("default", pod).container(container).instance
    if runtime == "netns":
        os.kill(instance.process.pid1, signal.SIGKILL)
    else:
        with docker_client() as client:
            client.api.kill(instance.id)


# -- helpers ---------------------------------------------------------------------------------------------
def sandbox_pod(core, name: str, labels: dict | None = None, init: list[str] | None = None) -> str:
    """Create a pod with the sidecar agent (and these init containers); wait until the first runs."""
    core.create_namespaced_pod("default", pod_manifest(name, labels=labels, init=init or [], containers=[AGENT]))

    def started() -> bool:
        status = core.read_namespaced_pod(name, "default").status
        return any(s.state.running for s in (status.init_container_statuses if init else
                                             status.container_statuses) or [])

    wait_for(started, what=f"pod {name} to run its first container")
    return name


def statuses(pod: dict, key: str = "containerStatuses") -> dict[str, dict]:
    return {s["name"]: s for s in pod["status"].get(key) or []}


def init_agent_state(core, pod: str):
    return core.read_namespaced_pod(pod, "default").status.init_container_statuses[0].state


def phase(core, pod: str) -> str:
    return core.read_namespaced_pod(pod, "default").status.phase


# -- exec ------------------------------------------------------------------------------------------------
def test_exit_code_and_stderr_in_the_api_servers_status_format(sandbox, core):
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["sh", "-c", "echo out; echo oops >&2; exit 3"], container=AGENT)
    assert (out.stdout, out.stderr) == ("out\n", "oops\n")
    assert out.status == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
                   "[sh -c echo out; echo oops >&2; exit 3], exit code 3",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert run(core, pod, ["true"], container=AGENT).status == {"metadata": {}, "status": "Success"}
    resp = open_exec(core, pod, ["sh", "-c", "exit 3"], container=AGENT)
    try:
        resp.run_forever(timeout=10)
        assert resp.returncode == 3
    finally:
        close(resp)


def test_missing_binary_is_an_internal_error_like_containerds(sandbox, core):
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["nosuch", "arg"], container=AGENT)
    assert (out.stdout, out.stderr) == ("", "")
    assert out.status["status"] == "Failure" and out.status["reason"] == "InternalError"
    assert out.status["code"] == 500 and list(out.status["details"]["causes"][0]) == ["message"]
    assert out.status["message"].startswith("Internal error occurred: error executing command in container: "
                                            "failed to exec in container: failed to start exec ")
    assert out.status["message"].endswith(
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuch": '
        'executable file not found in $PATH: unknown')
    resp = open_exec(core, pod, ["/no/such/tool"], container=AGENT)
    try:
        resp.run_forever(timeout=10)
        with pytest.raises(ValueError):  # what the official client does with it
            resp.returncode
    finally:
        close(resp)


def test_stdin_feeds_bridge_batch_and_v5_close_is_eof(sandbox, core):
    pod = sandbox_pod(core, "p")
    vxlan = ["ip", "link", "add", "vxeth0", "type", "vxlan", "id", "100", "dev", "eth0", "dstport", "4789"]
    assert exit_code(run(core, pod, vxlan, container=AGENT).status) == 0
    batch = "".join(f"fdb append 00:00:00:00:00:00 dev vxeth0 dst 10.66.0.{i}\n" for i in (50, 51, 52))
    out = run(core, pod, ["bridge", "-batch", "-"], stdin_data=batch, container=AGENT)
    assert exit_code(out.status) == 0, out
    fdb = json.loads(run(core, pod, ["bridge", "-j", "fdb", "show", "dev", "vxeth0"], container=AGENT).stdout)
    assert sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00") == ["10.66.0.50", "10.66.0.51",
                                                                                  "10.66.0.52"]


def test_v4_has_no_stdin_eof_but_both_protocols_stream_output(sandbox, core):
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["cat"], stdin_data="hello\n", protocol="v4.channel.k8s.io", timeout=1.0, container=AGENT)
    assert out.status is None and out.stdout == "hello\n"  # cat still waits for the EOF v4 cannot send
    out = run(core, pod, ["cat"], stdin_data="hello\n", protocol="v5.channel.k8s.io", container=AGENT)
    assert exit_code(out.status) == 0 and out.stdout == "hello\n"
    out = run(core, pod, ["sh", "-c", "exit 4"], protocol="v4.channel.k8s.io", container=AGENT)
    assert exit_code(out.status) == 4


def test_unversioned_channel_protocol_gets_plain_text_errors(sandbox, core):
    pod = sandbox_pod(core, "p")
    resp = open_exec(core, pod, ["sh", "-c", "echo hi; exit 4"], protocol="channel.k8s.io", container=AGENT)
    try:
        resp.run_forever(timeout=10)
        assert resp.read_stdout(timeout=0) == "hi\n"
        assert resp.read_channel(3, timeout=0) == "command terminated with exit code 4"
    finally:
        close(resp)


def test_output_streams_as_it_comes_and_stdin_reaches_a_running_command(sandbox, core):
    pod = sandbox_pod(core, "p")
    start = time.monotonic()
    resp = open_exec(core, pod, ["sh", "-c", "echo first; read line; echo got $line"], container=AGENT, stdin=True)
    try:
        wait_for(lambda: (resp.update(timeout=0.1), "first" in resp.peek_stdout())[1],
                 what="the first line while the command still waits for its input")
        assert resp.is_open()
        resp.write_stdin("go\n")
        out = finish(resp, 10, start)
        assert out.stdout == "first\ngot go\n" and exit_code(out.status) == 0
    finally:
        close(resp)


def test_large_output_streams_whole(sandbox, core):
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"], container=AGENT)
    assert exit_code(out.status) == 0 and len(out.stdout) == 3_000_000


def test_latency_fault_delays_every_exec(sandbox, core):
    pod = sandbox_pod(core, "p")
    sandbox.faults.set_exec_latency(0.5)
    out = run(core, pod, ["true"], container=AGENT)
    assert exit_code(out.status) == 0 and out.elapsed >= 0.5
    sandbox.faults.set_exec_latency(0)
    assert run(core, pod, ["true"], container=AGENT).elapsed < 0.5


def test_hang_fault_holds_matching_pods_only_until_lifted(sandbox, core):
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


# -- containers: the agent contract, restarts, statuses ---------------------------------------------------
def test_kill_term_1_ends_the_container_and_nothing_of_the_host(sandbox, core):
    before = host_pid1()
    pod = sandbox_pod(core, "p", init=[AGENT_INIT])
    assert 1 < int(run(core, pod, ["sh", "-c", "echo $$"], container=AGENT_INIT).stdout) < 100
    # No argv is special: `kill -TERM 1` inside a shell signals the container's main process, which exits 0.
    assert exit_code(run(core, pod, ["sh", "-c", "kill -TERM 1"], container=AGENT_INIT).status) in TERMINATE_CODES
    wait_for(lambda: phase(core, pod) == "Running", what="Running")
    terminated = init_agent_state(core, pod).terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert host_pid1() == before


def test_touch_run_terminate_ends_the_agent_in_its_own_run_only(sandbox, core):
    existed = os.path.exists("/run/terminate")
    pod = sandbox_pod(core, "old-agent", init=[AGENT_INIT])
    wait_agent_looping(core, pod, AGENT_INIT)
    assert exit_code(run(core, pod, ["sh", "-c", "touch /run/terminate"], container=AGENT_INIT).status) == 0
    assert os.path.exists("/run/terminate") == existed  # written in the container's /run, not the host's
    wait_for(lambda: phase(core, pod) == "Running", what="Running")
    assert init_agent_state(core, pod).terminated.exit_code == 0
    # The sidecar agent has a /run of its own: no terminate file there, it keeps running.
    assert exit_code(run(core, pod, ["ls", "/run/terminate"], container=AGENT).status) != 0


def test_the_controllers_release_exec_ends_the_init_agent_by_term(sandbox, core):
    pod = sandbox_pod(core, "p", init=[AGENT_INIT])
    start = time.monotonic()
    out = run(core, pod, RELEASE, container=AGENT_INIT)
    assert exit_code(out.status) in TERMINATE_CODES, out
    wait_for(lambda: phase(core, pod) == "Running", what="Running")
    assert time.monotonic() - start < 4.0  # TERM, not the netns agent's look for the file every 5 s
    assert init_agent_state(core, pod).terminated.exit_code == 0


def test_container_sees_only_its_own_processes(sandbox, core):
    before = host_pid1()
    pod = sandbox_pod(core, "p")
    out = run(core, pod, ["ps", "-e", "-o", "pid=,comm="], container=AGENT)
    seen = {int(pid): comm for pid, comm in (line.split(None, 1) for line in out.stdout.splitlines())}
    # PID 1 is the agent: `sh` running the script (netns), the image's /agent.sh (docker)
    assert seen[1] in ("sh", "agent.sh") and set(seen.values()) <= {"sh", "agent.sh", "sleep", "ps"}, seen
    assert len(seen) <= 4, seen
    # Signals to host pids reach nothing from in there; KILL to its own PID 1 is ignored (as in a real one).
    out = run(core, pod, ["sh", "-c", f"kill -TERM {os.getpid()} || echo refused; kill -KILL 1; echo alive"],
              container=AGENT)
    assert out.stdout == "refused\nalive\n"
    assert core.read_namespaced_pod(pod, "default").status.container_statuses[0].restart_count == 0
    assert host_pid1() == before


def test_main_process_killed_from_outside_is_an_error_then_restarted(sandbox, core, runtime):
    pod = sandbox_pod(core, "p")
    kill_from_outside(sandbox, runtime, pod, AGENT)

    def restarted():
        status = core.read_namespaced_pod(pod, "default").status.container_statuses[0]
        return status.restart_count == 1 and status.state.running and status

    status = wait_for(restarted, what="the restart")
    # 137: killed by SIGKILL (docker; netns where `unshare` passes its child's death by signal on, util-linux
    # 2.39+), 1 with older util-linux
    assert status.last_state.terminated.exit_code in (1, 137) and status.last_state.terminated.reason == "Error"
    assert exit_code(run(core, pod, ["true"], container=AGENT).status) == 0


def test_pod_lifecycle_init_containers_in_order_then_running_and_restarts(sandbox, core, runtime):
    prepare = {"name": "prepare", "image": AGENT_IMAGE, "command": ["sh", "-c", "exit 0"]}
    created = core.create_namespaced_pod("default", pod_manifest("p", init=[prepare, AGENT_INIT],
                                                                 containers=[AGENT, "app"]))
    assert created.status.phase == "Pending"
    assert created.metadata.uid and created.spec.node_name == "sandbox-node"

    pod = wait_for(lambda: (p := sandbox.pod("default", "p")) and p["status"].get("podIP") and
                   "running" in statuses(p, "initContainerStatuses")[AGENT_INIT]["state"] and p,
                   what="init agent running")
    init = statuses(pod, "initContainerStatuses")
    assert init["prepare"]["state"]["terminated"]["exitCode"] == 0
    assert init["prepare"]["state"]["terminated"]["reason"] == "Completed"
    assert statuses(pod)[AGENT]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["podIPs"] == [{"ip": pod["status"]["podIP"]}]
    assert pod["status"]["hostIP"] == sandbox.runtime.host_ip
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True" and conditions["Initialized"] == "False"
    assert held_by(sandbox, runtime, "p")

    # only running containers accept execs
    with pytest.raises(ApiException):
        run(core, "p", ["true"], container=AGENT)
    out = run(core, "p", ["ip", "-br", "addr", "show", "eth0"], container=AGENT_INIT)
    assert exit_code(out.status) == 0 and pod["status"]["podIP"] in out.stdout

    assert exit_code(run(core, "p", ["kill", "-TERM", "1"], container=AGENT_INIT).status) in TERMINATE_CODES
    pod = wait_for(lambda: (p := sandbox.pod("default", "p")) and p["status"]["phase"] == "Running" and p,
                   what="pod running")
    init = statuses(pod, "initContainerStatuses")[AGENT_INIT]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["state"]["terminated"]["reason"] == "Completed"
    main = statuses(pod)
    assert all(main[c]["ready"] and main[c]["started"] and "running" in main[c]["state"] for c in (AGENT, "app"))
    assert all(main[c]["containerID"].startswith(CONTAINER_ID_PREFIX[runtime]) for c in (AGENT, "app"))
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"

    # TERM to a main container: terminated, then restarted with restartCount 1, each step an event
    rv = pod["metadata"]["resourceVersion"]
    first_id = main[AGENT]["containerID"]
    assert exit_code(run(core, "p", ["kill", "-TERM", "1"], container=AGENT).status) in TERMINATE_CODES
    steps = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        agent = next(s for s in event["object"].status.container_statuses if s.name == AGENT)
        steps.append("terminated" if agent.state.terminated else "running" if agent.state.running else "waiting")
        if agent.restart_count == 1 and agent.state.running:
            assert agent.last_state.terminated.exit_code == 0
            assert agent.last_state.terminated.container_id == first_id != agent.container_id
            break
    assert steps[0] == "terminated" and steps[-1] == "running"


GATE = "example.com/wired"


def ready_condition(sandbox, name: str) -> dict:
    return next(c for c in sandbox.pod("default", name)["status"]["conditions"] if c["type"] == "Ready")


def test_readiness_gate_holds_ready_until_its_condition_is_true_through_pods_status(sandbox, core, kubectl):
    """As the kubelet: Ready needs every container ready AND every gate's condition "True"; a client sets
    the condition with a strategic merge patch of pods/status (what `patch_namespaced_pod_status` sends),
    merged by `type` with the kubelet's own conditions, which it keeps."""
    manifest = pod_manifest("p", init=[])
    manifest["spec"]["readinessGates"] = [{"conditionType": GATE}]
    core.create_namespaced_pod("default", manifest)
    wait_for(lambda: phase(core, "p") == "Running", what="running")
    ready = ready_condition(sandbox, "p")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == f'corresponding condition of pod readiness gate "{GATE}" does not exist.'
    assert {c["type"]: c["status"] for c in sandbox.pod("default", "p")["status"]["conditions"]}["ContainersReady"] \
        == "True"

    def set_gate(status: str) -> None:
        core.patch_namespaced_pod_status("p", "default", {"status": {"conditions": [
            {"type": GATE, "status": status, "reason": "Testing", "message": status}]}})

    set_gate("False")
    wait_for(lambda: ready_condition(sandbox, "p").get("message") ==
             f'the status of pod readiness gate "{GATE}" is not "True", but False', what="Ready says the gate is False")
    assert kubectl("get", "pod", "p", "-o", "wide").stdout.split("\n")[1].split()[-1] == "0/1"  # READINESS GATES
    set_gate("True")
    wait_for(lambda: ready_condition(sandbox, "p")["status"] == "True", what="Ready once the gate is True")
    assert kubectl("get", "pod", "p", "-o", "wide").stdout.split("\n")[1].split()[-1] == "1/1"
    conditions = sandbox.pod("default", "p")["status"]["conditions"]
    assert [c["type"] for c in conditions].count(GATE) == 1
    assert next(c for c in conditions if c["type"] == GATE)["message"] == "True"
    assert {"Ready", "ContainersReady", "Initialized", "PodScheduled"} <= {c["type"] for c in conditions}
    # a container restart republishes the status: the client's condition stays
    assert exit_code(run(core, "p", ["kill", "-TERM", "1"], container=AGENT).status) in TERMINATE_CODES
    wait_for(lambda: statuses(sandbox.pod("default", "p"))[AGENT]["restartCount"] == 1
             and ready_condition(sandbox, "p")["status"] == "True", what="restarted, Ready again")
    assert GATE in {c["type"] for c in sandbox.pod("default", "p")["status"]["conditions"]}


def test_delete_makes_a_pod_terminating_then_gone_with_what_held_it(sandbox, core, runtime):
    core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: phase(core, "p") == "Running", what="running")
    held = held_by(sandbox, runtime, "p")
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.delete_namespaced_pod("p", "default")
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.deletion_timestamp is not None))
        if event["type"] == "DELETED":
            break
    assert seen == [("MODIFIED", True), ("DELETED", True)]
    assert held and still_there(runtime, held) == set()
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("p", "default")
    assert raised.value.status == 404


# -- figures ---------------------------------------------------------------------------------------------
def _start_pods(core, names: list[str]) -> float:
    """Create the pods (init agent; sidecar agent and a busybox app, as the seed's example), release each
    init agent as the controller does as soon as it runs; seconds until all are Running."""
    start = time.monotonic()
    for name in names:
        app = {"name": "app", "image": "busybox", "command": ["sleep", "1000000000"]}
        core.create_namespaced_pod("default", pod_manifest(name, init=[AGENT_INIT], containers=[AGENT, app]))
    released: set[str] = set()

    def all_running() -> bool:
        for pod in core.list_namespaced_pod("default").items:
            name, status = pod.metadata.name, pod.status
            if name in released or not status.init_container_statuses:
                continue
            if status.init_container_statuses[0].state.running:
                assert exit_code(run(core, name, RELEASE, container=AGENT_INIT).status) in TERMINATE_CODES
                released.add(name)
        return all(phase(core, name) == "Running" for name in names)

    wait_for(all_running, timeout=120, what="every pod Running", interval=0.01)
    return time.monotonic() - start


def test_pod_start_and_exec_latency(sandbox, core, runtime):
    """Prints the figures docs/sandbox.md quotes: create → Running for one pod and for ten at once, and the
    latency of an exec of `true` through the API (official client, one at a time)."""
    one = _start_pods(core, ["one"])
    ten = _start_pods(core, [f"p{i}" for i in range(10)])
    latencies = []
    for _ in range(30):
        out = run(core, "one", ["true"], container=AGENT)
        assert exit_code(out.status) == 0
        latencies.append(out.elapsed)
    print(f"\n{runtime} runtime: one pod Running in {one:.2f} s, ten at once in {ten:.2f} s; exec of `true`: "
          f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert one < 30 and ten < 120


def test_concurrent_execs_all_complete(sandbox, core, runtime):
    """One ApiClient per thread (`stream()` is not thread-safe); prints the throughput."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    pod = sandbox_pod(core, "p")
    local = threading.local()
    clients = []

    def one(i: int) -> str:
        if not hasattr(local, "api"):
            local.api = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            clients.append(local.api)
        out = run(k8s.CoreV1Api(local.api), pod, ["sh", "-c", f"echo {i}"], container=AGENT)
        assert exit_code(out.status) == 0, out
        return out.stdout.strip()

    n = 100
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(n)))
    finally:
        for client in clients:
            client.close()
    print(f"\n{runtime} runtime: {n} execs from 8 threads: {n / (time.perf_counter() - start):.0f} execs/s")
    assert results == [str(i) for i in range(n)]
