"""Recording Events never fails the caller; a denied `create events` is said once until it works again."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException
from loguru import logger

from kube_vxlan_controller.k8s import events
from kube_vxlan_controller.model import Pod

POD = Pod(uid="u1", namespace="default", name="a")


class FakeCore:
    def __init__(self) -> None:
        self.deny = True
        self.created = 0

    def create_namespaced_event(self, namespace, body, **kwargs):
        if self.deny:
            raise ApiException(status=403, reason="Forbidden")
        self.created += 1


class FakeCluster:
    def __init__(self) -> None:
        self._core = FakeCore()

    def core(self):
        return self._core


def test_a_denied_events_create_is_logged_once_until_it_works_again():
    cluster, lines = FakeCluster(), []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        for _ in range(3):
            events.record_event(cluster, POD, reason="R", message="m")
        assert len([line for line in lines if "cannot record Events" in line]) == 1
        cluster.core().deny = False
        events.record_event(cluster, POD, reason="R", message="m")
        assert cluster.core().created == 1
        cluster.core().deny = True
        events.record_event(cluster, POD, reason="R", message="m")
        assert len([line for line in lines if "cannot record Events" in line]) == 2
    finally:
        logger.remove(sink)
