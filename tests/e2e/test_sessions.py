"""Sessions, end to end: each member's changes go over one long-lived exec into its sidecar; a session
severed (an API server or kubelet restart) is reopened by the next change; a pod that cannot keep one
falls back to one exec per change until its next resync, then reopens (root)."""

from __future__ import annotations

import collections

import pytest

import sidecarlog
from polling import wait_for

from .conftest import Cluster
from .test_controller import NET

pytestmark = pytest.mark.root

SESSION_SCRIPT = "--kvc-end--"


def sample(c, name: str, **labels) -> float:
    return c.metrics.registry.get_sample_value(name, labels) or 0


def converged(cluster: Cluster, n: int) -> list | None:
    pods = cluster.running("run=s")
    return pods if len(pods) == n and cluster.wired(pods, NET) else None


def by_pod(counts: collections.Counter, pods: list, kind: str) -> dict[str, int]:
    return {p.metadata.name: counts[p.metadata.name, kind] for p in pods}


def test_a_session_killed_is_reopened_and_a_pod_that_cannot_keep_one_falls_back_then_reopens(cluster: Cluster,
                                                                                              controller, sandbox):
    c = controller(resync=3)
    cluster.create_deployment("s", NET, replicas=3)
    three = wait_for(lambda: converged(cluster, 3), timeout=60, what="3 pods wired")
    wait_for(lambda: sample(c, "kvc_sessions_open") == 3, what="one session per member")
    assert len([t for t in sandbox.live_execs() if t.endswith(":vxlan-controller-agent")]) == 3

    # Killed: every stream into the pods is closed by the server. The next change finds each session ended
    # and reopens it: one exec per member, the change over the new session.
    since = sidecarlog.requests(sandbox.execs())
    sandbox.faults.sever_execs("run=s")
    cluster.scale("s", 4)
    four = wait_for(lambda: converged(cluster, 4), timeout=60, what="4 pods wired after the sever")
    wait_for(lambda: sample(c, "kvc_sessions_open") == 4, what="a session per member again")
    assert sample(c, "kvc_session_ends_total", reason="closed") == 3
    ran = sidecarlog.requests(sandbox.execs()) - since
    assert by_pod(ran, three, "session") == {p.metadata.name: 1 for p in three}
    assert by_pod(ran, three, "fdb") == {p.metadata.name: 1 for p in three}, "the change went over the session"
    assert sample(c, "kvc_session_fallbacks_total") == 0

    # Fallback: sessions cannot start in these pods any more (an agent image without what they need). The
    # next change finds each session ended, the new one fails before its first reply: the change goes as
    # one exec, and so does every request until the pod's next resync.
    sandbox.faults.break_commands("run=s", SESSION_SCRIPT)
    sandbox.faults.sever_execs("run=s")
    cluster.scale("s", 5)
    five = wait_for(lambda: converged(cluster, 5), timeout=60, what="5 pods wired by plain execs")
    # (each resync, every 1.5-3 s here, tries a session again, which fails again: the count only grows)
    wait_for(lambda: sample(c, "kvc_session_fallbacks_total") >= 5, what="every member fell back")
    wait_for(lambda: sample(c, "kvc_sessions_open") == 0, what="no session open")

    # Reopened: once sessions can start again, each pod's next resync tries one; its reads go over it.
    sandbox.faults.mend_commands()
    wait_for(lambda: sample(c, "kvc_sessions_open") == 5, timeout=30, what="every member's session reopened")
    assert converged(cluster, 5), "nothing lost, nothing stale"
    assert {t.split(":")[0].split("/")[1] for t in sandbox.live_execs()} == {p.metadata.name for p in five}


def test_soak_a_mesh_of_two_networks_under_churn_and_severed_sessions_ends_exact(cluster: Cluster, controller,
                                                                                 sandbox):
    """Two deployments, one in both networks and one in vxeth0 only, scaled up and down fifteen times, every
    session severed at every other step. Afterwards every pod's fdb on each of its networks
    holds exactly the other members: nothing lost, nothing stale."""
    c = controller()
    cluster.create_deployment("m", "vxeth0, vxeth1", replicas=3)
    cluster.create_deployment("n", "vxeth0", replicas=3)
    wait_for(lambda: len(cluster.running("run in (m,n)")) == 6, timeout=60, what="6 pods running")
    sizes = [(5, 2), (2, 4), (4, 1), (1, 3), (3, 5)] * 3
    for step, (m, n) in enumerate(sizes):  # each step: a change of both, then a sever while it is wired
        cluster.scale("m", m)
        cluster.scale("n", n)
        if step % 2:
            sandbox.faults.sever_execs("")
        wait_for(lambda: len(cluster.pods("run=m")) == m and len(cluster.pods("run=n")) == n, timeout=30,
                 what=f"m={m}, n={n} asked")
    sandbox.faults.sever_execs("")

    def exact() -> bool:
        ms, ns = cluster.running("run=m"), cluster.running("run=n")
        if len(ms) != 3 or len(ns) != 5 or len(cluster.pods("run in (m,n)")) != 8:
            return False
        return cluster.wired(ms + ns, "vxeth0") and cluster.wired(ms, "vxeth1") and all(
            cluster.fdb(p, "vxeth1") is None for p in ns)

    wait_for(exact, timeout=60, what="both networks exact after the soak")
    assert sample(c, "kvc_session_ends_total", reason="closed") >= 1
    wait_for(lambda: sample(c, "kvc_sessions_open") == 8, what="a session per pod again")
