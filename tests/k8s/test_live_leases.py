"""The election's Lease against the sandbox API (root): optimistic concurrency as kube-apiserver does it
(409 on a stale resourceVersion, 409 on a second create), and the watch that wakes a standby."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from kube_vxlan_controller.election import Elector
from kube_vxlan_controller.k8s.errors import Conflict
from kube_vxlan_controller.k8s.leases import LeaseLock, LeaseWatch
from kube_vxlan_controller.model import LeaseRecord

from .conftest import Recorder

pytestmark = pytest.mark.root

NS, NAME = "kube-system", "kube-vxlan-controller"
NOW = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=timezone.utc)


def lock(cluster) -> LeaseLock:
    return LeaseLock(cluster, namespace=NS, name=NAME)


def test_a_lease_round_trips_its_record(cluster):
    a = lock(cluster)
    assert a.get(5) is None
    record = LeaseRecord(holder="a_1", lease_duration=15, acquire_time=NOW, renew_time=NOW, transitions=2)
    a.create(record, 5)
    assert lock(cluster).get(5) == record
    released = LeaseRecord(holder="", lease_duration=1, acquire_time=NOW, renew_time=NOW, transitions=2)
    a.update(released, 5)
    lease = cluster.coordination().read_namespaced_lease(NAME, NS)
    assert lease.spec.holder_identity == "" and lease.spec.lease_duration_seconds == 1


def test_a_stale_update_and_a_second_create_are_409_conflicts(cluster):
    a, b = lock(cluster), lock(cluster)
    a.create(LeaseRecord(holder="a", lease_duration=15, renew_time=NOW), 5)
    with pytest.raises(Conflict) as created:
        b.create(LeaseRecord(holder="b", lease_duration=15, renew_time=NOW), 5)
    assert created.value.status == 409 and "already exists" in str(created.value)
    assert b.get(5).holder == "a"
    a.update(LeaseRecord(holder="a", lease_duration=15, renew_time=NOW), 5)  # b's resourceVersion is stale now
    with pytest.raises(Conflict) as stale:
        b.update(LeaseRecord(holder="b", lease_duration=15, renew_time=NOW), 5)
    assert "the object has been modified; please apply your changes to the latest version" in str(stale.value)
    assert lock(cluster).get(5).holder == "a"


def test_the_official_client_gets_kube_apiservers_conflict_status_for_a_stale_resource_version(cluster):
    api = cluster.coordination()
    lease = api.create_namespaced_lease(NS, V1Lease(metadata=V1ObjectMeta(name=NAME),
                                                    spec=V1LeaseSpec(holder_identity="a")))
    api.replace_namespaced_lease(NAME, NS, V1Lease(metadata=lease.metadata, spec=V1LeaseSpec(holder_identity="b")))
    with pytest.raises(ApiException) as e:
        api.replace_namespaced_lease(NAME, NS, V1Lease(metadata=lease.metadata, spec=V1LeaseSpec(holder_identity="c")))
    assert e.value.status == 409
    status = json.loads(e.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Conflict", 409)
    assert status["details"] == {"name": NAME, "group": "coordination.k8s.io", "kind": "leases"}
    assert api.read_namespaced_lease(NAME, NS).spec.holder_identity == "b"


def test_two_electors_on_the_sandbox_one_leads_and_a_release_hands_over_at_once(cluster):
    a = Elector(lock(cluster), identity="a", lease_duration=15, renew_deadline=10, retry_period=2)
    b = Elector(lock(cluster), identity="b", lease_duration=15, renew_deadline=10, retry_period=2)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert b.leader == "a"
    assert a.release()
    assert b.try_acquire_or_renew()
    assert lock(cluster).get(5).holder == "b" and lock(cluster).get(5).transitions == 1


def test_the_lease_watch_says_look_again_on_every_change(cluster, runner):
    changes = Recorder()
    runner.start(LeaseWatch(cluster, namespace=NS, name=NAME, on_change=lambda: changes(1), watch_timeout=5))
    changes.wait(lambda _: True, what="a look after the first list")
    seen = len(changes.items)
    a = lock(cluster)
    a.create(LeaseRecord(holder="a", lease_duration=15, renew_time=NOW), 5)
    changes.wait(lambda _: True, after=seen, what="a look after the create")
    seen = len(changes.items)
    a.update(LeaseRecord(holder="", lease_duration=1, renew_time=NOW), 5)
    changes.wait(lambda _: True, after=seen, what="a look after the release")
