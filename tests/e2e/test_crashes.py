"""Real crashes, injected by monkeypatching a pure function so that it raises for one pod or one network
(no test hook in the product): the supervision tree restarts what crashed, from level-triggered state,
and escalates a crash loop to a non-zero exit (root)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.actors import network

from .conftest import ROOT, Cluster, LEASE_FLAGS
from .crashing import crash_for
from .test_controller import NET, bare_pod
from polling import wait_for

pytestmark = pytest.mark.root


def restarts(c, kind: str) -> float:
    return c.metrics.registry.get_sample_value("kvc_actor_restarts_total", {"kind": kind}) or 0


def members(cluster: Cluster, names: str) -> list | None:
    pods = {p.metadata.name: p for p in cluster.running()}
    return [pods[n] for n in names] if all(n in pods for n in names) else None


def once(function, when):
    """`function`, except that its first call for which `when(*args)` holds raises instead."""
    fired = []

    def patched(*args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(args)
            raise RuntimeError("injected: a bug")
        return function(*args, **kwargs)

    patched.fired = fired
    return patched


def test_a_pod_actor_that_crashes_is_restarted_and_its_pod_wired_again(cluster: Cluster, controller, monkeypatch):
    c = controller(resync=600)
    for i, name in enumerate("ab", start=1):
        cluster.core.create_namespaced_pod("default", bare_pod(name, f"{NET} ip=192.168.80.{i}/24"))
    a, b = wait_for(lambda: members(cluster, "ab"), timeout=60, what="a and b running")
    wait_for(lambda: cluster.wired([a, b], NET), what="a and b wired")
    first = c.registry.existing_pod(b.metadata.uid)

    crash = once(agent.differences, lambda spec, link, underlay=None: str(spec.ip) == "192.168.80.2/24")
    monkeypatch.setattr(agent, "differences", crash)
    cluster.core.create_namespaced_pod("default", bare_pod("c", f"{NET} ip=192.168.80.3/24"))  # b's peers change
    wait_for(lambda: crash.fired, what="b's actor crashed")
    pods = wait_for(lambda: members(cluster, "abc"), timeout=60, what="c running")
    wait_for(lambda: cluster.wired(pods, NET), what="a, b and c wired, b by its new actor")
    assert restarts(c, "pod") == 1 and restarts(c, "pods") == 0
    new = c.registry.existing_pod(b.metadata.uid)
    assert new is not first and new.is_alive() and not first.is_alive()
    assert wait_for(lambda: cluster.ping(a, "192.168.80.2") and cluster.ping(b, "192.168.80.3"), what="pings")


def test_a_network_actor_that_crashes_is_rebuilt_and_its_members_fdb_stays_exact(cluster: Cluster, controller,
                                                                                monkeypatch):
    c = controller(resync=600)
    cluster.create_deployment("n", NET, replicas=3)
    wait_for(lambda: (pods := cluster.running("run=n")) and len(pods) == 3 and cluster.wired(pods, NET),
             timeout=60, what="3 pods wired")
    first = c.registry.networks()[NET]
    crash = once(network.Snapshot, lambda name, members: name == NET and len(members) == 4)
    monkeypatch.setattr(network, "Snapshot", crash)
    cluster.scale("n", 4)  # the fourth member's snapshot crashes the network's actor
    wait_for(lambda: crash.fired, what="the network actor crashed")
    wait_for(lambda: (pods := cluster.running("run=n")) and len(pods) == 4 and cluster.wired(pods, NET),
             timeout=60, what="4 pods wired by the rebuilt network actor")
    assert restarts(c, "network") == 1 and c.registry.networks()[NET] is not first
    cluster.scale("n", 2)
    wait_for(lambda: (pods := cluster.running("run=n")) and len(pods) == 2 and cluster.wired(pods, NET),
             timeout=60, what="2 pods wired after the rebuilt actor saw two leave")


def test_a_crash_right_after_the_setup_exec_sets_nothing_up_twice(cluster: Cluster, controller, sandbox,
                                                                  monkeypatch):
    c = controller(resync=600)
    calls = []

    def after_the_exec(specs, links, **kwargs):  # setup_and_release's second call: its exec has run
        calls.append(1)
        return len(calls) == 2 and any(str(s.ip) == "192.168.81.1/24" for s in specs)

    crash = once(agent.plan_links, after_the_exec)
    monkeypatch.setattr(agent, "plan_links", crash)
    cluster.core.create_namespaced_pod("default", bare_pod("s", f"{NET} ip=192.168.81.1/24"))
    wait_for(lambda: crash.fired, what="the crash after the setup exec")
    pod = wait_for(lambda: (m := members(cluster, "s")) and m[0], timeout=60, what="s running")
    wait_for(lambda: cluster.link(pod, NET) is not None and restarts(c, "pod") == 1, what="s set up, one restart")
    adds = [e for e in sandbox.execs() if e["pod"] == "s" and "link add" in (e.get("stdin") or "")
            + " ".join(e["argv"])]
    assert len(adds) == 1, adds
    cluster.create_deployment("peer", f"{NET}")
    peer = wait_for(lambda: cluster.running("run=peer"), what="a peer")[0]
    wait_for(lambda: cluster.wired([pod, peer], NET), what="s wired to its peer")


def test_a_crash_loop_in_one_pod_escalates_to_the_root_and_the_process_exits_1(cluster: Cluster, sandbox, tmp_path):
    cluster.core.create_namespaced_pod("default", bare_pod("loop", f"{NET} ip=192.168.82.1/24"))
    log = tmp_path / "controller.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "e2e" / "crashing.py"), "192.168.82.1", "run", "--kubeconfig",
             str(sandbox.kubeconfig), "--namespace", "kube-system", "--health", "", "--admin", "127.0.0.1:0",
             "--exec-deadline", "3", "--restart-intensity", "1", "--restart-period", "60", *LEASE_FLAGS],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    print(text)
    assert code == 1, text[-2000:]
    # pods level: 2 crashes (the second is one too many) → the root restarts the level; 2 more → the root's
    # second restart is one too many: it gives up.
    assert text.count("supervisor pods: pod default/loop crashed") == 4, text
    assert text.count("supervisor pods: restart intensity exceeded, escalating") == 2
    assert "supervisor root: restart intensity exceeded: pods level crashed" in text
    assert "pykka: Unhandled exception" not in text  # the supervisor's line is the one
    assert "RuntimeError: injected: a bug in the path of the pod with 192.168.82.1" in text
