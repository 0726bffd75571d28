"""CoreV1 sends exactly the requests the generated CoreV1Api sends for the same calls (method, URL with its
query, headers, body), and treats responses as it does (a raw response unread, a model, an ApiException)."""

from __future__ import annotations

import io
import json

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException, NotFoundException

from kube_vxlan_controller.k8s.corev1 import CoreV1


class Pool:
    """Stands in for the REST client's urllib3 pool: records each request as it would go on the wire, and
    answers with a real urllib3 response."""

    def __init__(self, status: int, body: dict) -> None:
        self.status, self.body, self.requests = status, body, []

    def request(self, method, url, *, headers=None, body=None, fields=None, timeout=None, preload_content=True,
                **_):
        self.requests.append((method, url, dict(headers or {}), body, fields, timeout))
        return urllib3.HTTPResponse(body=io.BytesIO(json.dumps(self.body).encode()), status=self.status,
                                    headers={"Content-Type": "application/json"}, preload_content=preload_content)


def recorded(api_class, call, *, status: int = 200, body: dict | None = None):
    """(the requests `call(api)` sent, what it returned or raised)."""
    configuration = client.Configuration(host="https://api.example:6443")
    configuration.api_key = {"BearerToken": "Bearer t0ken"}
    api_client = client.ApiClient(configuration)
    api_client.user_agent = "test"
    pool = api_client.rest_client.pool_manager = Pool(status, body or {})
    try:
        outcome = call(api_class(api_client))
    except ApiException as error:
        outcome = error
    return [(m, u, h, b, f, str(t)) for m, u, h, b, f, t in pool.requests], outcome


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p.1"}, "involvedObject": {"name": "p"}}
CALLS = {
    "read pod": lambda api: api.read_namespaced_pod("p", "ns", _preload_content=False, _request_timeout=5),
    "list pods": lambda api: api.list_namespaced_pod("ns", label_selector="vxlan.openvnf.org",
                                                     _preload_content=False, _request_timeout=5),
    "watch pods": lambda api: api.list_pod_for_all_namespaces(
        label_selector="a=b", watch=True, resource_version="42", timeout_seconds=300, allow_watch_bookmarks=True,
        _preload_content=False, _request_timeout=(5, 310)),
    "list configmaps": lambda api: api.list_namespaced_config_map("kube-system", field_selector="metadata.name=x",
                                                                  _preload_content=False),
    "read configmap": lambda api: api.read_namespaced_config_map("x", "kube-system", _request_timeout=5),
    "patch status": lambda api: api.patch_namespaced_pod_status(
        "p", "ns", {"metadata": {"uid": "u1"}, "status": {"conditions": [{"type": "T", "status": "True"}]}},
        _request_timeout=5),
    "create event": lambda api: api.create_namespaced_event("ns", client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="p."), involved_object=client.V1ObjectReference(name="p"),
        reason="R", message="m"), _request_timeout=5),
}
EXEC = {"command": ["bridge", "-batch", "-"], "container": "agent", "stdin": True, "stdout": True, "stderr": True,
        "tty": False}


@pytest.mark.parametrize("what", CALLS)
def test_the_request_is_the_generated_apis(what):
    body = EVENT if what == "create event" else POD
    ours, _ = recorded(CoreV1, CALLS[what], body=body)
    theirs, _ = recorded(client.CoreV1Api, CALLS[what], body=body)
    assert ours == theirs and len(ours) == 1


def test_the_status_patch_is_a_strategic_merge_patch():
    (request,), _ = recorded(CoreV1, CALLS["patch status"], body=POD)
    assert request[2]["Content-Type"] == "application/strategic-merge-patch+json"
    assert request[1] == "https://api.example:6443/api/v1/namespaces/ns/pods/p/status"


def test_the_exec_request_is_the_generated_apis():
    (theirs,), _ = recorded(client.CoreV1Api, lambda api: api.connect_get_namespaced_pod_exec(
        "p", "ns", **EXEC, _preload_content=False))
    ours = recorded(CoreV1, lambda api: api.exec_request("p", "ns", **EXEC))[1]
    assert ours == (theirs[1], theirs[2])


def test_exec_query_repeats_command_and_spells_booleans_as_the_api_does():
    url, headers = recorded(CoreV1, lambda api: api.exec_request("p", "ns", **EXEC))[1]
    assert url == ("https://api.example:6443/api/v1/namespaces/ns/pods/p/exec?command=bridge&command=-batch"
                   "&command=-&container=agent&stderr=true&stdin=true&stdout=true&tty=false")
    assert headers["authorization"] == "Bearer t0ken"


def test_without_preload_the_raw_response_comes_back_unread():
    _, raw = recorded(CoreV1, CALLS["read pod"], body=POD)
    assert isinstance(raw, urllib3.HTTPResponse) and json.loads(raw.data) == POD


def test_with_preload_the_model_comes_back():
    _, configmap = recorded(CoreV1, CALLS["read configmap"], body={"data": {"vxeth0": "100"}})
    assert isinstance(configmap, client.V1ConfigMap) and configmap.data == {"vxeth0": "100"}


def test_the_status_patch_comes_back_unparsed():
    _, raw = recorded(CoreV1, CALLS["patch status"], body=POD)
    assert isinstance(raw, (bytes, bytearray)) and json.loads(raw) == POD


@pytest.mark.parametrize("what", ["read pod", "read configmap", "patch status"])
def test_an_error_status_raises_the_generated_apis_exception(what):
    body = {"kind": "Status", "reason": "NotFound", "code": 404}
    _, ours = recorded(CoreV1, CALLS[what], status=404, body=body)
    _, theirs = recorded(client.CoreV1Api, CALLS[what], status=404, body=body)
    assert isinstance(ours, NotFoundException) and type(ours) is type(theirs)
    assert (ours.status, json.loads(ours.body)) == (theirs.status, json.loads(theirs.body)) == (404, body)


def test_an_unknown_list_argument_is_refused():
    with pytest.raises(TypeError, match="limit"):
        CoreV1(client.ApiClient()).list_namespaced_pod("ns", limit=5)
