"""The docker runtime's kubelet: real containers from local images, started, restarted, logged and removed
as a kubelet does (root and a Docker engine; skipped, saying why, otherwise). What every runtime does the
same is tests/sandbox/test_runtime_contract.py's; here, what only real containers can show."""

from __future__ import annotations

import contextlib
import ipaddress
import time

import pytest
from apihelpers import (AGENT, AGENT_IMAGE, AGENT_INIT, TERMINATE_CODES, agent_container, close, exit_code, finish,
                        open_exec, pod_manifest, run)
from kubernetes.client.rest import ApiException
from polling import wait_for
from runtimes import docker_client, docker_containers, sandbox_on

pytestmark = pytest.mark.root

RELEASE = ["sh", "-c", "touch /run/terminate; kill -TERM 1"]
SLEEPER = {"name": "app", "image": "busybox", "command": ["sleep", "1000000000"]}


def status_of(sandbox, pod: str) -> dict:
    return sandbox.pod("default", pod)["status"]


def container_status(sandbox, pod: str, name: str) -> dict:
    status = status_of(sandbox, pod)
    return next(s for s in status.get("initContainerStatuses", []) + status["containerStatuses"] if s["name"] == name)


def pod_containers(sandbox, pod: str) -> dict[str, list[dict]]:
    """The pod's Docker containers (as inspected) by container name (`POD`: the infra container), oldest
    first."""
    uid = sandbox.pod("default", pod)["metadata"]["uid"]
    by_name: dict[str, list[dict]] = {}
    for c in docker_containers(f"kvcsb.pod={uid}"):
        by_name.setdefault(c["Config"]["Labels"].get("kvcsb.container", "POD"), []).append(c)
    return by_name


def engine_time(timestamp: str) -> tuple[str, int]:
    """A Docker timestamp (RFC 3339, nanoseconds with trailing zeros trimmed) in a comparable form."""
    whole, _, fraction = timestamp.rstrip("Z").partition(".")
    return whole, int(fraction.ljust(9, "0"))


def running(sandbox, pod: str, name: str) -> bool:
    return "running" in container_status(sandbox, pod, name)["state"]


def test_init_agent_released_by_the_controllers_exec_then_main_containers_start(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("p", init=[AGENT_INIT], containers=[AGENT, SLEEPER]))
    wait_for(lambda: running(sandbox, "p", AGENT_INIT), what="the init agent running")
    assert set(pod_containers(sandbox, "p")) == {"POD", AGENT_INIT}  # no main container exists yet
    assert all(container_status(sandbox, "p", c)["state"] == {"waiting": {"reason": "PodInitializing"}}
               for c in (AGENT, "app"))

    assert exit_code(run(core, "p", RELEASE, container=AGENT_INIT).status) in TERMINATE_CODES
    wait_for(lambda: status_of(sandbox, "p")["phase"] == "Running", what="the pod running")
    terminated = container_status(sandbox, "p", AGENT_INIT)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    containers = pod_containers(sandbox, "p")
    [init] = containers[AGENT_INIT]
    assert init["State"]["ExitCode"] == 0 and init["State"]["Status"] == "exited"
    for name in (AGENT, "app"):  # started only after the init agent ended (the engine's own clock, in ns)
        [main] = containers[name]
        assert engine_time(main["State"]["StartedAt"]) > engine_time(init["State"]["FinishedAt"])
        assert container_status(sandbox, "p", name)["containerID"] == f"docker://{main['Id']}"


def test_sidecar_term_restarts_it_and_the_previous_instance_serves_logs_until_the_next(sandbox, core, kubectl):
    core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: running(sandbox, "p", AGENT), what="the agent running")
    first = container_status(sandbox, "p", AGENT)["containerID"]
    assert exit_code(run(core, "p", ["kill", "-TERM", "1"], container=AGENT).status) in TERMINATE_CODES

    status = wait_for(lambda: (s := container_status(sandbox, "p", AGENT))["restartCount"] == 1 and
                      "running" in s["state"] and s, what="the restart")
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["containerID"]) == (0, "Completed", first)
    assert [c["State"]["Status"] for c in pod_containers(sandbox, "p")[AGENT]] == ["exited", "running"]
    assert "agent: got TERM, exiting" in kubectl("logs", "p", "-c", AGENT, "--previous").stdout
    assert "got TERM" not in core.read_namespaced_pod_log("p", "default", container=AGENT)

    assert exit_code(run(core, "p", ["kill", "-TERM", "1"], container=AGENT).status) in TERMINATE_CODES
    wait_for(lambda: (s := container_status(sandbox, "p", AGENT))["restartCount"] == 2 and "running" in s["state"],
             what="the second restart")
    instances = pod_containers(sandbox, "p")[AGENT]
    assert len(instances) == 2 and f"docker://{instances[0]['Id']}" != first  # the first instance is gone


def test_deletion_stops_containers_with_the_grace_period_then_removes_them(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("agent", init=[]))  # the agent ends at once on TERM
    sleeper = pod_manifest("sleeper", init=[], containers=[SLEEPER])  # `sleep` as PID 1 ignores TERM
    sleeper["spec"]["terminationGracePeriodSeconds"] = 2
    core.create_namespaced_pod("default", sleeper)
    for pod, name in (("agent", AGENT), ("sleeper", "app")):
        wait_for(lambda: running(sandbox, pod, name), what=f"{pod} running")
    held = {pod: {c["Id"] for cs in pod_containers(sandbox, pod).values() for c in cs} for pod in ("agent", "sleeper")}

    start = time.monotonic()
    core.delete_namespaced_pod("agent", "default")  # grace 30 s: TERM is enough
    wait_for(lambda: sandbox.pod("default", "agent") is None, what="the agent pod gone")
    assert time.monotonic() - start < 10
    start = time.monotonic()
    core.delete_namespaced_pod("sleeper", "default")
    assert sandbox.pod("default", "sleeper")["metadata"]["deletionGracePeriodSeconds"] == 2
    wait_for(lambda: sandbox.pod("default", "sleeper") is None, what="the sleeper pod gone")
    assert time.monotonic() - start >= 2  # TERM ignored: KILLed after its grace
    with docker_client() as client:
        left = {c["Id"] for c in client.api.containers(all=True)}
    assert not (held["agent"] | held["sleeper"]) & left


def test_an_exec_running_when_its_pod_is_deleted_ends_with_a_status(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: running(sandbox, "p", AGENT), what="the agent running")
    start = time.monotonic()
    resp = open_exec(core, "p", ["sleep", "300"], container=AGENT)
    try:
        core.delete_namespaced_pod("p", "default")
        out = finish(resp, 30, start)
        # the agent's stop takes the exec along (137), or the container is gone when it is asked (InternalError)
        assert out.status is not None
        assert out.status.get("reason") == "InternalError" or exit_code(out.status) == 137, out
    finally:
        close(resp)
    wait_for(lambda: sandbox.pod("default", "p") is None, what="the pod gone")


def test_a_missing_image_waits_with_err_image_never_pull_and_the_pod_stays_pending(sandbox, core):
    missing = {"name": "app", "image": "kvc-test/no-such-image"}
    core.create_namespaced_pod("default", pod_manifest("main", init=[], containers=[missing]))
    core.create_namespaced_pod("default", pod_manifest("init", init=[dict(missing, name="prepare")]))
    refused = {"name": "app", "image": "busybox", "securityContext": {"capabilities": {"add": ["NO_SUCH_CAP"]}}}
    core.create_namespaced_pod("default", pod_manifest("refused", init=[], containers=[refused]))
    core.create_namespaced_pod("default", pod_manifest("fine", init=[]))

    message = 'Container image "kvc-test/no-such-image" is not present with pull policy of Never'
    for pod, name in (("main", "app"), ("init", "prepare")):
        wait_for(lambda: container_status(sandbox, pod, name)["state"] == {
            "waiting": {"reason": "ErrImageNeverPull", "message": message}}, what=f"{pod}'s image error")
    waiting = wait_for(lambda: container_status(sandbox, "refused", "app")["state"].get("waiting", {}).get(
        "reason") == "CreateContainerError" and container_status(sandbox, "refused", "app")["state"]["waiting"],
        what="the engine's refusal")
    assert "NO_SUCH_CAP" in waiting["message"]  # the engine's own words
    wait_for(lambda: running(sandbox, "fine", AGENT), what="the other pod running")  # the sandbox carries on
    assert status_of(sandbox, "main")["phase"] == status_of(sandbox, "init")["phase"] == "Pending"
    assert container_status(sandbox, "init", AGENT)["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert container_status(sandbox, "main", "app")["restartCount"] == 0
    assert set(pod_containers(sandbox, "main")) == {"POD"}  # nothing was created from the missing image
    core.delete_namespaced_pod("main", "default")
    wait_for(lambda: sandbox.pod("default", "main") is None, what="the pod gone")


def test_the_container_spec_maps_to_the_container_as_the_kubelet_maps_it(sandbox, core, kubectl):
    admin = dict(agent_container("admin"), image="kube-vxlan-controller-agent:9.9")  # an alias of the agent image
    admin["securityContext"]["capabilities"]["drop"] = ["CHOWN"]
    plain = {"name": "plain", "image": AGENT_IMAGE}
    script = {"name": "script", "image": "busybox", "command": ["sh", "-c"], "workingDir": "/tmp",
              "args": ['echo "$GREETING from $PWD"; exec sleep 1000000000'],
              "env": [{"name": "GREETING", "value": "hello"}]}
    args_only = {"name": "args-only", "image": "busybox", "args": ["sleep", "1000000000"]}
    core.create_namespaced_pod("default", pod_manifest("p", init=[], containers=[admin, plain, script, args_only]))
    wait_for(lambda: status_of(sandbox, "p")["phase"] == "Running" and
             all("running" in s["state"] for s in status_of(sandbox, "p")["containerStatuses"]), what="all running")

    assert kubectl("logs", "p", "-c", "script").stdout == "hello from /tmp\n"
    containers = {name: cs[-1] for name, cs in pod_containers(sandbox, "p").items()}
    assert containers["args-only"]["Config"]["Cmd"] == ["sleep", "1000000000"]
    assert not containers["args-only"]["Config"]["Entrypoint"]  # the image's own (busybox has none)
    assert containers["script"]["Config"]["Entrypoint"] == ["sh", "-c"]
    assert containers["admin"]["Config"]["Image"] == AGENT_IMAGE
    infra = containers["POD"]["Id"]
    assert all(c["HostConfig"]["NetworkMode"] == f"container:{infra}" for n, c in containers.items() if n != "POD")

    # capabilities: NET_ADMIN only where added, CHOWN gone where dropped
    link = ["ip", "link", "add", "d0", "type", "vxlan", "id", "9", "dev", "eth0", "dstport", "4789"]
    assert exit_code(run(core, "p", link, container="admin").status) == 0
    refused = run(core, "p", [*link[:3], "d1", *link[4:]], container="plain")
    assert exit_code(refused.status) != 0 and "Operation not permitted" in refused.stderr
    assert exit_code(run(core, "p", ["chown", "1", "/tmp"], container="admin").status) != 0
    assert exit_code(run(core, "p", ["chown", "1", "/tmp"], container="plain").status) == 0
    # one network namespace (the link made in one is seen in the other), a PID namespace each
    assert "d0" in run(core, "p", ["ip", "-br", "link"], container="plain").stdout
    pod_ip = status_of(sandbox, "p")["podIP"]
    assert pod_ip in run(core, "p", ["ip", "-br", "addr", "show", "eth0"], container="plain").stdout
    processes = run(core, "p", ["ps", "-e", "-o", "args="], container="admin").stdout.splitlines()
    assert processes[0] == "/bin/sh /agent.sh" and not any("1000000000" in p for p in processes), processes


def test_init_containers_run_in_order_each_to_completion(sandbox, core, kubectl):
    first = {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first; sleep 1"]}
    second = {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo second"]}
    core.create_namespaced_pod("default", pod_manifest("p", init=[first, second], containers=[SLEEPER]))
    wait_for(lambda: status_of(sandbox, "p")["phase"] == "Running", what="the pod running")
    for name in ("first", "second"):
        terminated = container_status(sandbox, "p", name)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
        assert kubectl("logs", "p", "-c", name).stdout == f"{name}\n"
    containers = {name: cs[-1]["State"] for name, cs in pod_containers(sandbox, "p").items()}
    assert engine_time(containers["first"]["FinishedAt"]) < engine_time(containers["second"]["StartedAt"])
    assert engine_time(containers["second"]["FinishedAt"]) < engine_time(containers["app"]["StartedAt"])


def test_a_failing_init_container_is_restarted_unless_the_restart_policy_is_never(sandbox, core):
    failing = {"name": "failing", "image": "busybox", "command": ["sh", "-c", "exit 1"]}
    for policy in ("OnFailure", "Never"):
        manifest = pod_manifest(policy.lower(), init=[failing], containers=[SLEEPER])
        manifest["spec"]["restartPolicy"] = policy
        core.create_namespaced_pod("default", manifest)

    status = wait_for(lambda: (s := container_status(sandbox, "onfailure", "failing"))["restartCount"] >= 1 and s,
                      what="the failing init container restarted")
    assert status["lastState"]["terminated"]["exitCode"] == 1 and status["lastState"]["terminated"]["reason"] == "Error"
    assert status_of(sandbox, "onfailure")["phase"] == "Pending"

    wait_for(lambda: status_of(sandbox, "never")["phase"] == "Failed", what="the pod failed")
    status = container_status(sandbox, "never", "failing")
    assert status["restartCount"] == 0 and status["state"]["terminated"]["exitCode"] == 1
    assert container_status(sandbox, "never", "app")["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert "app" not in pod_containers(sandbox, "never")


def test_restart_policy_of_main_containers(sandbox, core):
    for name, policy, code in (("always", "Always", 0), ("onfailure", "OnFailure", 0), ("never", "Never", 3)):
        manifest = pod_manifest(name, init=[], containers=[
            {"name": "app", "image": "busybox", "command": ["sh", "-c", f"exit {code}"]}])
        manifest["spec"]["restartPolicy"] = policy
        core.create_namespaced_pod("default", manifest)
    wait_for(lambda: container_status(sandbox, "always", "app")["restartCount"] >= 2, what="restarts")
    wait_for(lambda: status_of(sandbox, "onfailure")["phase"] == "Succeeded", what="Succeeded")
    wait_for(lambda: status_of(sandbox, "never")["phase"] == "Failed", what="Failed")
    assert container_status(sandbox, "onfailure", "app")["restartCount"] == 0
    terminated = container_status(sandbox, "never", "app")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_a_command_that_cannot_start_is_a_start_error(sandbox, core):
    manifest = pod_manifest("p", init=[], containers=[{"name": "app", "image": "busybox", "command": ["/no/such"]}])
    manifest["spec"]["restartPolicy"] = "Never"
    core.create_namespaced_pod("default", manifest)
    wait_for(lambda: status_of(sandbox, "p")["phase"] == "Failed", what="the pod failed")
    terminated = container_status(sandbox, "p", "app")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")
    assert "/no/such" in terminated["message"] and terminated["containerID"].startswith("docker://")


def test_logs_as_kubectl_reads_them(sandbox, core, kubectl):
    talker = {"name": "talker", "image": "busybox", "command": ["sh", "-c", "echo one; sleep 1; echo two >&2"]}
    manifest = pod_manifest("p", init=[AGENT_INIT], containers=[talker])
    manifest["spec"]["restartPolicy"] = "Never"
    core.create_namespaced_pod("default", manifest)
    wait_for(lambda: running(sandbox, "p", AGENT_INIT), what="the init agent running")
    refused = kubectl("logs", "p", "-c", "talker", check=False)
    assert refused.returncode != 0
    assert 'container "talker" in pod "p" is waiting to start: PodInitializing' in refused.stderr
    assert "agent: waiting for TERM" in kubectl("logs", "p", "-c", AGENT_INIT).stdout

    assert exit_code(run(core, "p", RELEASE, container=AGENT_INIT).status) in TERMINATE_CODES
    wait_for(lambda: running(sandbox, "p", "talker") or status_of(sandbox, "p")["phase"] == "Succeeded",
             what="the talker started")
    assert kubectl("logs", "-f", "p", "-c", "talker").stdout == "one\ntwo\n"  # follows it to its end
    wait_for(lambda: status_of(sandbox, "p")["phase"] == "Succeeded", what="the pod succeeded")
    assert kubectl("logs", "p", "--tail", "1").stdout == "two\n"  # the one container: no -c needed
    refused = kubectl("logs", "p", "-c", "talker", "--previous", check=False)
    assert 'previous terminated container "talker" in pod "p" not found' in refused.stderr
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log("p", "default", container="nosuch")
    assert raised.value.status == 400


def test_pods_reach_each_other_over_vxlan_on_the_docker_network(sandbox, core):
    busybox = {"name": "app", "image": "busybox", "command": ["sleep", "1000000000"]}
    for name in ("a", "b"):
        core.create_namespaced_pod("default", pod_manifest(name, init=[], containers=[AGENT, busybox]))
    for name in ("a", "b"):
        wait_for(lambda: status_of(sandbox, name)["phase"] == "Running", what=f"{name} running")
    ips = {name: status_of(sandbox, name)["podIP"] for name in ("a", "b")}
    for name, peer, address in (("a", "b", "192.168.100.1"), ("b", "a", "192.168.100.2")):
        batch = (f"link add vxeth0 type vxlan id 100 dev eth0 dstport 4789\n"
                 f"addr add {address}/24 dev vxeth0\nlink set vxeth0 up\n")
        assert exit_code(run(core, name, ["ip", "-batch", "-"], stdin_data=batch, container=AGENT).status) == 0
        fdb = f"fdb append 00:00:00:00:00:00 dev vxeth0 dst {ips[peer]}\n"
        assert exit_code(run(core, name, ["bridge", "-batch", "-"], stdin_data=fdb, container=AGENT).status) == 0
    # Polled: the kernel's ARP table is shared by every namespace of the machine, and while other sandboxes
    # fill it (table_fulls in /proc/net/stat/arp_cache) a first resolution may be dropped.
    wait_for(lambda: exit_code(run(core, "a", ["ping", "-c", "1", "-W", "2", "192.168.100.2"], container="app",
                                   timeout=15).status) == 0, what="a ping over the VXLAN")


def test_two_sandboxes_at_once_get_networks_of_their_own(sandbox, core, tmp_path):
    (tmp_path / "other").mkdir()
    with contextlib.contextmanager(sandbox_on)("docker", tmp_path / "other") as other:
        mine, theirs = ipaddress.ip_network(sandbox.runtime.subnet), ipaddress.ip_network(other.runtime.subnet)
        assert not mine.overlaps(theirs)
    assert ipaddress.ip_address(sandbox.runtime.host_ip) in mine
    core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: status_of(sandbox, "p").get("podIP"), what="the pod IP")
    assert ipaddress.ip_address(status_of(sandbox, "p")["podIP"]) in mine
    assert status_of(sandbox, "p")["hostIP"] == sandbox.runtime.host_ip
