"""Events and the network ConfigMap against the sandbox API (root)."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiClient

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.configmaps import ConfigMapStream, read_configmap
from kube_vxlan_controller.k8s.events import COMPONENT, record_event
from kube_vxlan_controller.k8s.pods import pod_from_json

from .conftest import Recorder
from polling import wait_for

pytestmark = pytest.mark.root

NAME = "kube-vxlan-controller"


def configmap(data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}, "data": data}


def test_record_event_creates_an_event_on_the_pod(core, cluster, make_pod):
    pod = pod_from_json(ApiClient().sanitize_for_serialization(make_pod("p1")))
    record_event(cluster, pod, reason="VxlanNetworkInvalid", message="vxeth1: id=abc is not a VNI")
    events = core.list_namespaced_event("default").items
    assert len(events) == 1
    event = events[0]
    assert (event.reason, event.message, event.type) == ("VxlanNetworkInvalid", "vxeth1: id=abc is not a VNI", "Warning")
    involved = event.involved_object
    assert (involved.kind, involved.namespace, involved.name, involved.uid) == ("Pod", "default", "p1", pod.uid)
    assert event.source.component == COMPONENT
    assert event.count == 1 and event.first_timestamp and event.last_timestamp


def test_record_event_never_raises_and_logs_a_warning(sandbox, cluster, make_pod, logs):
    pod = pod_from_json(ApiClient().sanitize_for_serialization(make_pod("p1")))
    sandbox.faults.fail_requests(1.0)
    record_event(cluster, pod, reason="VxlanNetworkInvalid", message="bad", type="Normal")
    sandbox.faults.fail_requests(0.0)
    assert any("default/p1: could not record event VxlanNetworkInvalid" in line for line in logs)


def test_read_configmap_returns_its_data_or_nothing_when_missing(core, cluster, logs):
    assert dict(read_configmap(cluster, NAME, "kube-system")) == {}
    assert dict(read_configmap(cluster, NAME, "kube-system")) == {}
    assert sum("not found" in line for line in logs) == 1, "a missing ConfigMap is logged once"
    core.create_namespaced_config_map("kube-system", configmap({"vxeth0": "id=100 up"}))
    assert dict(read_configmap(cluster)) == {"vxeth0": "id=100 up"}  # the controller's namespace by default


def test_configmap_stream_reports_the_data_then_every_change(core, cluster, runner):
    core.create_namespaced_config_map("kube-system", configmap({"vxeth0": "100"}))
    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "unrelated"}, "data": {"x": "y"}})
    seen = Recorder()
    runner.start(ConfigMapStream(cluster, on_change=seen, backoff=Backoff(initial=0.05, cap=0.2)))
    seen.wait(lambda d: dict(d) == {"vxeth0": "100"}, what="the first data")

    core.patch_namespaced_config_map(NAME, "kube-system", {"data": {"vxeth0": "100", "vxeth1": "id=101 up"}})
    seen.wait(lambda d: dict(d) == {"vxeth0": "100", "vxeth1": "id=101 up"}, what="the change")
    core.patch_namespaced_config_map("unrelated", "kube-system", {"data": {"x": "z"}})
    core.delete_namespaced_config_map(NAME, "kube-system")
    seen.wait(lambda d: dict(d) == {}, what="deletion as empty data")
    core.create_namespaced_config_map("kube-system", configmap({"vxeth2": "102"}))
    seen.wait(lambda d: dict(d) == {"vxeth2": "102"}, what="re-creation")
    assert [dict(d) for d in seen.items] == [
        {"vxeth0": "100"}, {"vxeth0": "100", "vxeth1": "id=101 up"}, {}, {"vxeth2": "102"}]


def test_configmap_stream_reports_nothing_new_after_a_relist_of_the_same_data(core, sandbox, cluster, runner):
    core.create_namespaced_config_map("kube-system", configmap({"vxeth0": "100"}))
    seen, heard = Recorder(), Recorder()
    runner.start(ConfigMapStream(cluster, on_change=seen, observer=heard, backoff=Backoff(initial=0.05, cap=0.2)))
    seen.wait(lambda d: True)
    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "other"}, "data": {}})
    sandbox.faults.compact()
    sandbox.faults.drop_watches()
    wait_for(lambda: heard.items.count("listed") >= 2, what="a relist")
    assert len(seen.items) == 1
