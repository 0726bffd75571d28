"""The sandbox API as the official client (kubernetes 37) sees it: pods, watches, selectors, deployments,
the other kinds, errors (root only: pods are network namespaces). The kubelet's lifecycle and statuses,
the same on every runtime, are test_runtime_contract.py's."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from apihelpers import (AGENT, AGENT_INIT, TERMINATE_CODES, deployment_manifest, netns_names, pod_manifest,
                        status_codes_as_nobody)
from polling import wait_for

pytestmark = pytest.mark.root


def exec_in(core, name: str, container: str, argv: list[str], namespace: str = "default") -> tuple[int, str]:
    resp = stream(core.connect_get_namespaced_pod_exec, name, namespace, command=argv, container=container,
                  stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        resp.run_forever(timeout=10)
        return resp.returncode, resp.read_stdout(timeout=0)
    finally:
        resp.close()


def phase(sandbox, name: str, namespace: str = "default") -> str | None:
    pod = sandbox.pod(namespace, name)
    return pod and pod["status"].get("phase")


def statuses(pod: dict, key: str = "containerStatuses") -> dict[str, dict]:
    return {s["name"]: s for s in pod["status"].get(key) or []}


def release_init(sandbox, core, name: str) -> None:
    wait_for(lambda: (statuses(sandbox.pod("default", name), "initContainerStatuses").get(AGENT_INIT) or {})
             .get("state", {}).get("running"), what=f"{name}'s init agent running")
    assert exec_in(core, name, AGENT_INIT, ["kill", "-TERM", "1"])[0] in TERMINATE_CODES
    wait_for(lambda: phase(sandbox, name) == "Running", what=f"{name} running")


def test_list_then_watch_from_the_lists_version_sees_only_later_changes(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("before"))
    listed = core.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["before"]
    core.create_namespaced_pod("default", pod_manifest("after"))
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default",
                                      resource_version=listed.metadata.resource_version, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if ("ADDED", "after") in seen:
            break
    assert ("ADDED", "before") not in seen
    assert ("ADDED", "after") in seen
    versions = [int(v) for v in re.findall(r"\d+", listed.metadata.resource_version)]
    assert versions and versions[0] > 0


def test_watch_without_version_starts_with_the_current_objects(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("p"))
    event = next(iter(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=5)))
    assert (event["type"], event["object"].metadata.name) == ("ADDED", "p")


def test_watch_from_a_compacted_version_gets_410(sandbox, core):
    old = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_manifest("p"))
    sandbox.faults.compact()
    with pytest.raises(ApiException) as raised:
        for _ in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=old, timeout_seconds=5):
            pass
    assert raised.value.status == 410
    # a relist's version is watchable again
    now = core.list_namespaced_pod("default").metadata.resource_version
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"seen": "yes"}}})
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=now, timeout_seconds=5):
        if event["object"].metadata.labels.get("seen") == "yes":
            break
    else:
        raise AssertionError("the watch from the relisted version missed the change")


def test_timeout_seconds_ends_a_watch(sandbox, core):
    start = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1))
    assert events == []
    assert 0.9 < time.monotonic() - start < 4


def test_label_and_field_selectors(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("a1", {"app": "a", "tier": "front"}))
    core.create_namespaced_pod("default", pod_manifest("a2", {"app": "a"}))
    core.create_namespaced_pod("default", pod_manifest("b1", {"app": "b"}))
    core.create_namespaced_pod("other", pod_manifest("c1", {"app": "c"}, init=[]))

    def names(**kw) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod("default", **kw).items)

    assert names(label_selector="app=a") == ["a1", "a2"]
    assert names(label_selector="app==a,tier=front") == ["a1"]
    assert names(label_selector="app!=a") == ["b1"]
    assert names(label_selector="tier") == ["a1"]
    assert names(label_selector="!tier") == ["a2", "b1"]
    assert names(label_selector="app in (a, b),!tier") == ["a2", "b1"]
    assert names(label_selector="app notin (a)") == ["b1"]
    assert names(field_selector="metadata.name=a2") == ["a2"]
    assert names(field_selector="metadata.name!=a2") == ["a1", "b1"]
    assert names(field_selector="spec.nodeName=sandbox-node") == ["a1", "a2", "b1"]
    everywhere = core.list_pod_for_all_namespaces(field_selector="metadata.namespace=other")
    assert [p.metadata.name for p in everywhere.items] == ["c1"]
    wait_for(lambda: phase(sandbox, "c1", "other") == "Running", what="c1 running")
    running = core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["c1"]
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("default", label_selector="app in (a")
    assert raised.value.status == 400


def test_watch_with_a_selector_sees_a_pod_leave_it_as_deleted(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("p", {"app": "x"}))
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "y"}}})
    events = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=x",
                                      resource_version=rv, timeout_seconds=5):
        events.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert events[-1] == "DELETED"
    assert core.read_namespaced_pod("p", "default").metadata.labels == {"app": "y"}


def test_pod_recreated_with_the_same_name_is_a_new_pod_with_a_new_namespace(sandbox, core):
    first = core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: phase(sandbox, "p") == "Running", what="running")
    first_netns = sandbox.pod_netns("default", "p")
    core.delete_namespaced_pod("p", "default", grace_period_seconds=0)
    wait_for(lambda: sandbox.pod("default", "p") is None, what="gone")
    second = core.create_namespaced_pod("default", pod_manifest("p", init=[]))
    wait_for(lambda: phase(sandbox, "p") == "Running", what="running again")
    assert second.metadata.uid != first.metadata.uid
    assert sandbox.pod_netns("default", "p") != first_netns
    wait_for(lambda: first_netns not in netns_names(), what="the old namespace removed")


def test_errors_are_status_objects_with_the_right_codes(sandbox, core):
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("nope", "default")
    body = json.loads(raised.value.body)
    assert raised.value.status == 404
    assert body | {"details": None} == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "message": 'pods "nope" not found', "reason": "NotFound", "code": 404,
                                       "details": None}
    core.create_namespaced_pod("default", pod_manifest("p"))
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod("default", pod_manifest("p"))
    assert raised.value.status == 409 and json.loads(raised.value.body)["reason"] == "AlreadyExists"


def _raw_exec(sandbox, pod: str, container: str) -> tuple[int, dict]:
    url = (f"{sandbox.url}/api/v1/namespaces/default/pods/{pod}/exec?command=true&container={container}"
           "&stdout=true&stderr=true")
    request = urllib.request.Request(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                   "Sec-WebSocket-Version": "13",
                                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                   "Sec-WebSocket-Protocol": "v5.channel.k8s.io"})
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    raise AssertionError("the exec was accepted")


def test_exec_into_an_unknown_pod_is_404_and_an_unknown_container_400(sandbox, core):
    assert _raw_exec(sandbox, "nope", AGENT) == (404, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": 'pods "nope" not found',
        "reason": "NotFound", "code": 404, "details": {"name": "nope", "kind": "pods"}})
    core.create_namespaced_pod("default", pod_manifest("p"))
    code, body = _raw_exec(sandbox, "p", "nosuch")
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", "container nosuch is not valid for pod p")
    code, body = _raw_exec(sandbox, "p", AGENT)  # waiting for the init containers
    assert (code, body["message"]) == (400, f'container not found ("{AGENT}")')


def test_deployment_makes_named_pods_scales_by_patch_and_delete_cascades(sandbox, core, apps):
    apps.create_namespaced_deployment("default", deployment_manifest("web", 3))

    def live_pods() -> list:
        return [p for p in core.list_namespaced_pod("default", label_selector="app=web").items
                if p.metadata.deletion_timestamp is None]

    pods = wait_for(lambda: len(live_pods()) == 3 and live_pods(), what="3 pods")
    for pod in pods:
        assert re.fullmatch(r"web-[a-z0-9]{10}-[a-z0-9]{5}", pod.metadata.name), pod.metadata.name
        assert pod.metadata.labels["vxlan.openvnf.org"] == "true"
        owner = pod.metadata.owner_references[0]
        assert owner.kind == "ReplicaSet" and owner.controller
        assert pod.metadata.labels["pod-template-hash"] in owner.name
    rs = apps.read_namespaced_replica_set(pods[0].metadata.owner_references[0].name, "default")
    assert rs.metadata.owner_references[0].kind == "Deployment"

    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}})
    wait_for(lambda: len(live_pods()) == 5, what="5 pods")
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}})
    wait_for(lambda: len(live_pods()) == 2, what="2 pods")
    wait_for(lambda: apps.read_namespaced_deployment("web", "default").status.replicas == 2, what="status 2")
    assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 2

    for pod in live_pods():
        release_init(sandbox, core, pod.metadata.name)
    wait_for(lambda: apps.read_namespaced_deployment("web", "default").status.ready_replicas == 2, what="2 ready")

    netns = {sandbox.pod_netns("default", p.metadata.name) for p in live_pods()}
    apps.delete_namespaced_deployment("web", "default")
    wait_for(lambda: core.list_namespaced_pod("default").items == [], what="pods deleted")
    assert apps.list_namespaced_replica_set("default").items == []
    assert not netns & netns_names()


def test_configmaps_events_and_leases_with_optimistic_concurrency(sandbox, api_client, core):
    from kubernetes import client as k8s

    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "cm"}, "data": {"vxeth0": "id=100"}})
    cm = core.read_namespaced_config_map("cm", "kube-system")
    assert cm.data == {"vxeth0": "id=100"}
    core.patch_namespaced_config_map("cm", "kube-system", {"data": {"vxeth1": "id=101"}})
    assert core.read_namespaced_config_map("cm", "kube-system").data == {"vxeth0": "id=100", "vxeth1": "id=101"}
    assert [c.metadata.name for c in core.list_namespaced_config_map("kube-system").items] == ["cm"]
    core.delete_namespaced_config_map("cm", "kube-system")
    assert core.list_namespaced_config_map("kube-system").items == []

    core.create_namespaced_event("default", {
        "metadata": {"generateName": "p."}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "BadNetwork", "message": "vxeth9: no id", "type": "Warning"})
    events = core.list_namespaced_event("default").items
    assert [e.reason for e in events] == ["BadNetwork"] and events[0].metadata.name.startswith("p.")
    k8s.EventsV1Api(api_client).create_namespaced_event("default", {
        "metadata": {"name": "e2"}, "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "kvc",
        "reportingInstance": "kvc-1", "action": "Setup", "reason": "BadNetwork", "type": "Warning",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}})

    leases = k8s.CoordinationV1Api(api_client)
    lease = leases.create_namespaced_lease("kube-system", {"metadata": {"name": "kvc"},
                                                           "spec": {"holderIdentity": "a"}})
    lease.spec.holder_identity = "b"
    updated = leases.replace_namespaced_lease("kvc", "kube-system", lease)
    assert updated.spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as raised:
        leases.replace_namespaced_lease("kvc", "kube-system", lease)
    assert raised.value.status == 409 and json.loads(raised.value.body)["reason"] == "Conflict"


def test_watch_sees_changes_made_from_other_threads_in_order(sandbox, core):
    rv = core.list_namespaced_pod("default").metadata.resource_version
    names = [f"p{i}" for i in range(5)]

    def create() -> None:
        for name in names:
            core.create_namespaced_pod("default", pod_manifest(name))

    creator = threading.Thread(target=create)
    creator.start()
    added = []
    versions = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        versions.append(int(event["object"].metadata.resource_version))
        if event["type"] == "ADDED":
            added.append(event["object"].metadata.name)
        if len(added) == len(names):
            break
    creator.join()
    assert added == names
    assert versions == sorted(versions)


def test_another_local_user_is_refused(sandbox):
    """Exec runs as root here: only the user running the sandbox may use its API."""
    assert status_codes_as_nobody([f"{sandbox.url}/api/v1/pods"]) == [403]
    with urllib.request.urlopen(f"{sandbox.url}/version", timeout=5) as response:  # this user: served
        assert json.loads(response.read())["major"] == "1"
