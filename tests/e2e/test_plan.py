"""`kube-vxlan-controller plan` against the seed example on the sandbox: what it prints is what the controller
then really runs, exec for exec, argv and stdin — as the sandbox recorded them server side."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from polling import wait_for

from kube_vxlan_controller.wired import CONDITION_TYPE

from .conftest import ROOT

pytestmark = pytest.mark.root


def plan(sandbox, name: str) -> dict:
    """The CLI, as an operator runs it, online (with the fixture's --exec-deadline, as the controller's)."""
    out = subprocess.run(
        [sys.executable, "-m", "kube_vxlan_controller.cli", "plan", "--pod-namespace", "default", name, "--kubeconfig",
         str(sandbox.kubeconfig), "--namespace", "kube-system", "--exec-deadline", "3", "-o", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def waiting_in_init(cluster, selector: str, count: int) -> list:
    pods = [p for p in cluster.pods(selector) if p.status.pod_ip and p.status.init_container_statuses
            and p.status.init_container_statuses[0].state.running]
    return pods if len(pods) == count else []


def wired(cluster, pod) -> bool:
    now = cluster.core.read_namespaced_pod(pod.metadata.name, "default")
    return any(c.type == CONDITION_TYPE and c.status == "True" for c in now.status.conditions or [])


def ran(sandbox, pod) -> list[dict]:
    return [{"container": e["container"], "argv": e["argv"], "stdin": e["stdin"] or None}
            for e in sandbox.execs() if e["pod"] == pod.metadata.name]


def planned(p: dict) -> list[dict]:
    return [{"container": e["container"], "argv": e["argv"], "stdin": e["stdin"]} for e in p["execs"]]


def test_plan_of_the_seed_example_is_what_the_controller_runs(cluster, controller, sandbox):
    cluster.create_example()
    pods = wait_for(lambda: waiting_in_init(cluster, "vxlan.openvnf.org=true", 3), timeout=60,
                    what="a, b and gw waiting in their init agent")
    plans = {p.metadata.name: plan(sandbox, p.metadata.name) for p in pods}
    for p in pods:
        assert plans[p.metadata.name]["errors"] == []
        assert plans[p.metadata.name]["peers"] == {net: [] for net in plans[p.metadata.name]["peers"]}
    first = controller()
    for p in pods:
        wait_for(lambda: wired(cluster, p), timeout=60, what=f"{p.metadata.name} wired")
        assert ran(sandbox, p)[0] == planned(plans[p.metadata.name])[0], "the setup exec, as planned"

    # A newcomer into wired networks, planned while it waits: both its execs, fdb batch included.
    first.stop()
    before = {p.metadata.uid for p in cluster.pods("run=a")}
    cluster.scale("a", 2)
    (new,) = wait_for(lambda: [p for p in waiting_in_init(cluster, "run=a", 1) if p.metadata.uid not in before],
                      timeout=60, what="a second a waiting in its init agent")
    expected = plan(sandbox, new.metadata.name)
    members = {p.metadata.name: p.status.pod_ip for p in cluster.running()}
    gw_ip = next(ip for name, ip in members.items() if name.startswith("gw-"))
    a_ip = next(ip for name, ip in members.items() if name.startswith("a-") and name != new.metadata.name)
    assert sorted(expected["peers"]["vxeth1"]) == sorted([gw_ip, a_ip])
    controller()
    wait_for(lambda: wired(cluster, new), timeout=60, what="the new a wired")
    assert ran(sandbox, new)[:2] == planned(expected)
    carried = expected["execs"][1]["argv"][5]  # the session's first request, carried by its opening
    fdb = [line.split() for line in carried.splitlines() if line.startswith("append ")]
    assert [(op, dev, sorted(ips)) for op, dev, *ips in fdb] == [("append", "vxeth1", sorted([gw_ip, a_ip]))]
