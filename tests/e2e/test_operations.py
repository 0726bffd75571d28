"""Operating the controller: inspect/list through the query actor, graceful SIGTERM, restart repairs (root)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ROOT, Cluster
from polling import wait_for
from .test_controller import NET, bare_pod

pytestmark = pytest.mark.root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kube_vxlan_controller.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_inspect_and_list_print_the_seed_formats_and_show_a_hung_pod(cluster: Cluster, controller_process):
    admin = f"127.0.0.1:{free_port()}"
    controller_process("--admin", admin, "--exec-deadline", "2")
    cluster.create_deployment("q", NET, replicas=2)
    pods = wait_for(lambda: len(cluster.running("run=q")) == 2 and cluster.running("run=q"), what="2 pods")
    wait_for(lambda: cluster.wired(pods, NET), what="2 pods wired")
    a, b = sorted(pods, key=lambda p: p.metadata.name)

    out = cli("inspect", "nets", NET, "--admin", admin)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"[{NET}]\n")
    assert f" pod: default/{a.metadata.name} {a.status.pod_ip}\n net: dev:eth0 id:100 name:vxeth0 type:vxlan up:true\n" \
           f" fdb: 00:00:00:00:00:00 dst {b.status.pod_ip} self permanent\n" in out.stdout

    listed = cli("list", "pods", "--admin", admin)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == sorted(f"default/{p.metadata.name} {NET}" for p in pods)
    assert cli("list", "pods", "q-nomatch", "--admin", admin).stdout == ""
    as_json = json.loads(cli("list", "pods", "--admin", admin, "-o", "json").stdout)
    assert {row["pod"] for row in as_json} == {f"default/{p.metadata.name}" for p in pods}

    # One pod hangs: the answer still comes, within the query deadline, and says which pod is hung.
    cluster.sandbox.faults.hang_execs("run=q")
    cluster.core.create_namespaced_pod("default", bare_pod("other", NET))  # keeps the hung pods busy
    started = time.monotonic()
    out = cli("inspect", "nets", NET, "--admin", admin, "-o", "json")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    (net,) = json.loads(out.stdout)
    hung = [m for m in net["members"] if m["fdb"] is None]
    # Either the query's own deadline passed, or the pod actor's exec hit its deadline first.
    assert hung and all("no answer" in m["error"] or "deadline" in m["error"] for m in hung), hung
    assert took < 15, f"inspect took {took:.1f}s with a hung pod"
    cluster.sandbox.faults.lift_hangs()


def test_cli_says_clearly_when_no_controller_answers():
    out = cli("inspect", "nets", NET, "--admin", f"127.0.0.1:{free_port()}")
    assert out.returncode == 3
    assert "no controller answers" in out.stderr


def pod_processes(cluster: Cluster) -> dict[str, str]:
    """The exec processes still running in each pod (the sandbox's registry of them: every container's
    main process lives in the pod's network namespace too, so `ip netns pids` would name those)."""
    found = {}
    for pod in cluster.pods():
        netns = cluster.sandbox.pod_netns(pod.metadata.namespace, pod.metadata.name)
        pids = cluster.sandbox.network.processes.pids(netns)
        if pids:
            found[pod.metadata.name] = " ".join(map(str, pids))
    return found


def test_sigterm_exits_0_within_15s_and_a_restart_repairs_what_changed_meanwhile(cluster: Cluster,
                                                                                 controller_process):
    health = f"127.0.0.1:{free_port()}"
    first = controller_process("--health", health)
    cluster.create_deployment("g", NET, replicas=3)
    wait_for(lambda: len(cluster.running("run=g")) == 3 and cluster.wired(cluster.running("run=g"), NET),
             timeout=60, what="3 pods wired")
    ready = urllib.request.urlopen(f"http://{health}/readyz", timeout=5)
    assert ready.status == 200
    metrics = urllib.request.urlopen(f"http://{health}/metrics", timeout=5).read().decode()
    assert 'kvc_execs_total{outcome="ok"}' in metrics and 'kvc_network_members{network="vxeth0"} 3.0' in metrics

    # Slow execs so that some are in flight when TERM arrives.
    cluster.sandbox.faults.set_exec_latency(1.0)
    cluster.scale("g", 5)
    wait_for(lambda: len(cluster.pods("run=g")) == 5, what="scale to 5 requested")
    time.sleep(0.3)  # not a synchronisation: only lets the controller start some execs before TERM
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    took = time.monotonic() - started
    assert took < 15, f"graceful stop took {took:.1f}s"
    log = open(first.log_path).read()
    assert "received SIGTERM" in log and "controller stopped" in log
    cluster.sandbox.faults.set_exec_latency(0)
    # What the controller started in pods ends by itself (`timeout N` around every batch).
    wait_for(lambda: not pod_processes(cluster), timeout=15, what="no exec process left in any pod")

    # While it is down: a peer's entry removed by hand, a pod deleted.
    pods = cluster.running("run=g")  # the 3 set up before; the 2 new ones wait in Init for a controller
    assert len(pods) >= 3
    victim, tampered, *_ = pods
    peer_ip = next(p.status.pod_ip for p in pods if p not in (victim, tampered))
    if peer_ip in (cluster.fdb(tampered, NET) or set()):
        out = cluster.in_pod(tampered, ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", NET, "dst", peer_ip])
        assert out.returncode == 0, out.stderr
    cluster.core.delete_namespaced_pod(victim.metadata.name, "default")
    controller_process("--resync", "600")  # the repair must come from the restart, not from a resync
    wait_for(lambda: len(cluster.running("run=g")) == 5 and cluster.wired(cluster.running("run=g"), NET),
             timeout=60, what="5 pods wired after the restart")
