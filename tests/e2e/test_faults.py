"""The controller under API faults and actor crashes: it converges to exactly the desired state (root)."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from .conftest import Cluster
from polling import wait_for
from .test_controller import NET, blind_the_watcher

pytestmark = pytest.mark.root


def retry(call, *args, **kwargs):
    """The test's own API calls go through the same failing server: retry them until one lands."""
    return wait_for(lambda: _attempt(call, *args, **kwargs), timeout=30, interval=0.05, what=f"{call.__name__}")


def _attempt(call, *args, **kwargs):
    try:
        return call(*args, **kwargs) or True
    except ApiException as error:
        if error.status >= 500:
            return None
        raise


def converged(cluster: Cluster, selector: str, replicas: int) -> bool:
    pods = cluster.running(selector)
    return len(pods) == replicas and cluster.wired(pods, NET)


def test_dropped_watches_410s_and_api_errors_during_churn_converge(cluster: Cluster, controller):
    c = controller()
    cluster.create_deployment("f", NET, replicas=4)
    wait_for(lambda: converged(cluster, "run=f", 4), timeout=30, what="4 pods wired")
    restarts_before = c.metrics.watch_restarts.collect()

    # Half the API requests fail; the history is compacted and every watch dropped, so the watcher
    # must relist (410) through the errors, and notice the pod deleted while it was not watching.
    victim = cluster.running("run=f")[0]
    cluster.sandbox.faults.fail_requests(0.5)
    cluster.sandbox.faults.compact()
    cluster.sandbox.faults.drop_watches()
    retry(cluster.core.delete_namespaced_pod, victim.metadata.name, "default")
    retry(cluster.apps.patch_namespaced_deployment, "f", "default", {"spec": {"replicas": 6}})
    cluster.sandbox.faults.compact()
    cluster.sandbox.faults.drop_watches()
    cluster.sandbox.faults.fail_requests(0.0)

    wait_for(lambda: converged(cluster, "run=f", 6), timeout=60, what="6 pods wired after the faults")
    for pod in cluster.running("run=f"):
        assert victim.status.pod_ip not in cluster.fdb(pod, NET) or victim.status.pod_ip in {
            p.status.pod_ip for p in cluster.running("run=f")}
    assert c.metrics.watch_restarts.collect() != restarts_before, "the faults did reach the watcher"


def test_watcher_crash_is_restarted_and_a_pod_deleted_meanwhile_leaves(cluster: Cluster, controller):
    c = controller()
    cluster.create_deployment("w", NET, replicas=3)
    wait_for(lambda: converged(cluster, "run=w", 3), timeout=30, what="3 pods wired")
    first = c.tree.watcher

    blind_the_watcher(c, seconds=4.0)
    victim = cluster.running("run=w")[0]
    cluster.core.delete_namespaced_pod(victim.metadata.name, "default")
    wait_for(lambda: cluster.sandbox.pod("default", victim.metadata.name) is None, what="victim deleted")
    assert not first.is_alive()

    second = wait_for(lambda: (w := c.tree.watcher) is not first and w.is_alive() and w, timeout=15,
                      what="a new watcher")
    # The deployment replaced the victim; the new watcher must drop the victim from every fdb.
    wait_for(lambda: converged(cluster, "run=w", 3), timeout=30, what="3 pods wired without the victim")
    cluster.scale("w", 5)
    wait_for(lambda: converged(cluster, "run=w", 5), timeout=60, what="5 pods wired by the new watcher")
    assert second.is_alive() and not c.fatal.is_set()


def test_pod_deleted_mid_setup_is_dropped_and_the_rest_converge(cluster: Cluster, controller):
    from .test_controller import bare_pod

    c = controller(exec_deadline=2.0)
    cluster.sandbox.faults.hang_execs("doomed=yes")
    cluster.core.create_namespaced_pod("default", bare_pod("doomed", NET, {"doomed": "yes"}))
    cluster.create_deployment("ok", NET, replicas=2)
    wait_for(lambda: any(s.pod_key == "default/doomed" and s.status in ("setting up", "hung")
                         for s in c.board.all()), what="the controller busy setting up the doomed pod")
    cluster.core.delete_namespaced_pod("doomed", "default")
    cluster.sandbox.faults.lift_hangs()
    wait_for(lambda: not any(s.pod_key == "default/doomed" for s in c.board.all()), timeout=15,
             what="the doomed pod's actor gone")
    wait_for(lambda: converged(cluster, "run=ok", 2), timeout=30, what="the other pods wired")
