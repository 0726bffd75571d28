"""The sandbox's responses byte for byte as kube-apiserver writes them, on every route it serves (root only).

One walk over raw HTTP — discovery, /version, openapi (v3; v2 as JSON and as protobuf), then get/list/watch
(plain and as Table), create, update, three kinds of patch, delete and deletecollection of pods, configmaps,
deployments (with `scale` and `status`), a plain namespaced kind and a cluster-scoped one, then every kind of
error — records each exchange; the tests assert over all of them at once and name every route that is off:
- `Content-Type: application/json` exactly, no charset (lightkube takes nothing else for a Status);
- every JSON body is one compact line ending in a newline, as Go's `json.Encoder` writes it (the Erlang
  original reads a list up to that newline), and so is every watch event;
- the few routes that are not JSON keep what kube-apiserver sends for them.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass

import pytest
from apihelpers import deployment_manifest, pod_manifest
from polling import wait_for

pytestmark = pytest.mark.root

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
#: what kubectl (client-go's discovery) asks /openapi/v2 for.
PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
#: the aiohttp server's limit on a request body (api.py `client_max_size`).
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Exchange:
    method: str
    path: str
    accept: str
    expected: int
    status: int
    #: every Content-Type header of the response (one, when all is well).
    content_types: list[str]
    transfer_encoding: str | None
    #: the whole body; for a watch, the event lines read (each as received, newline included).
    body: bytes
    lines: list[bytes]

    @property
    def watch(self) -> bool:
        return "watch=true" in self.path

    def __str__(self) -> str:
        accept = " as Table" if self.accept == TABLE else ""
        return f"{self.method} {self.path}{accept} → {self.status}"


class Walker:
    """Raw HTTP against one sandbox; each call is recorded as an Exchange."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.exchanges: list[Exchange] = []

    def call(self, method: str, path: str, expected: int, body=None, *, accept: str = "application/json",
             content_type: str = "application/json", lines: int = 0) -> Exchange:
        """One request; `lines` > 0 reads that many lines of a stream and hangs up (a watch never ends)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            headers = {"Accept": accept}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            read = [response.readline() for _ in range(lines)]
            exchange = Exchange(method, path, accept, expected, response.status,
                                response.headers.get_all("Content-Type") or [],
                                response.headers.get("Transfer-Encoding"),
                                b"".join(read) if lines else response.read(), read)
        finally:
            conn.close()
        self.exchanges.append(exchange)
        return exchange

    def json(self, method: str, path: str, expected: int, body=None, **kw) -> dict:
        """A call whose answer the walk goes on with: it must be the expected one."""
        exchange = self.call(method, path, expected, body, **kw)
        assert exchange.status == expected, f"{exchange}: {exchange.body[:300]!r}"
        return json.loads(exchange.body)

    def watch(self, path: str, **kw) -> Exchange:
        sep = "&" if "?" in path else "?"
        return self.call("GET", f"{path}{sep}watch=true&timeoutSeconds=30", 200, lines=1, **kw)

    def kind(self, collection: str, manifest: dict, all_namespaces: str | None = None) -> None:
        """Every verb on one kind: create, get, list, watch (plain and as Table), update, patch, delete,
        deletecollection, and the conflicts in between."""
        name = manifest["metadata"]["name"]
        item = f"{collection}/{name}"
        self.call("POST", collection, 201, manifest)
        self.call("POST", collection, 409, manifest)  # AlreadyExists
        current = self.json("GET", item, 200)
        self.call("GET", item, 200, accept=TABLE)
        self.call("GET", collection, 200)
        self.call("GET", collection, 200, accept=TABLE)
        if all_namespaces:
            self.call("GET", all_namespaces, 200)
        self.watch(collection)
        self.watch(collection, accept=TABLE)
        current["metadata"].setdefault("labels", {})["wire"] = "yes"
        del current["metadata"]["resourceVersion"]  # unconditional: the kubelet may have written the pod since
        self.call("PUT", item, 200, current)
        current["metadata"]["resourceVersion"] = "1"
        self.call("PUT", item, 409, current)  # Conflict: a stale resourceVersion
        self.call("PATCH", item, 200, {"metadata": {"annotations": {"a": "1"}}},
                  content_type="application/merge-patch+json")
        self.call("PATCH", item, 200, {"metadata": {"annotations": {"b": "2"}}},
                  content_type="application/strategic-merge-patch+json")
        self.call("PATCH", item, 200, [{"op": "add", "path": "/metadata/annotations/c", "value": "3"}],
                  content_type="application/json-patch+json")
        self.call("DELETE", item, 200)
        self.call("POST", collection, 201, {**manifest, "metadata": {**manifest["metadata"], "name": f"{name}-2"}})
        self.call("DELETE", f"{collection}?labelSelector=wire%3Dyes", 200)
        self.call("DELETE", collection, 200)


def walk(w: Walker) -> None:
    for path in ("/version", "/version/", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1",
                 "/apis/coordination.k8s.io/v1", "/openapi/v3", "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1"):
        w.call("GET", path, 200)
    w.call("GET", "/openapi/v2", 200)
    w.call("GET", "/openapi/v2", 200, accept=PROTOBUF)
    w.call("GET", "/healthz", 200)

    ns = "/api/v1/namespaces/default"
    w.kind(f"{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                                "data": {"k": "v"}}, all_namespaces="/api/v1/configmaps")
    w.kind(f"{ns}/pods", pod_manifest("p"), all_namespaces="/api/v1/pods")
    w.kind("/apis/apps/v1/namespaces/default/deployments", deployment_manifest("d", 0),
           all_namespaces="/apis/apps/v1/deployments")
    w.kind("/apis/coordination.k8s.io/v1/namespaces/default/leases",
           {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
            "spec": {"holderIdentity": "a"}})
    w.kind("/apis/rbac.authorization.k8s.io/v1/clusterroles",
           {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cr"},
            "rules": []})

    # subresources: scale and status of a deployment, status and log of a pod
    deploy = "/apis/apps/v1/namespaces/default/deployments/s"
    w.call("POST", "/apis/apps/v1/namespaces/default/deployments", 201, deployment_manifest("s", 0))
    scale = w.json("GET", f"{deploy}/scale", 200)
    w.call("PUT", f"{deploy}/scale", 200, {**scale, "spec": {"replicas": 0}})
    w.call("PATCH", f"{deploy}/scale", 200, {"spec": {"replicas": 0}}, content_type="application/merge-patch+json")
    w.call("PATCH", f"{deploy}/scale", 422, {"spec": {"replicas": -1}}, content_type="application/merge-patch+json")
    status = w.json("GET", f"{deploy}/status", 200)
    w.call("PUT", f"{deploy}/status", 200, status)
    w.call("POST", f"{ns}/pods", 201, pod_manifest("q", init=[]))
    w.call("GET", f"{ns}/pods/q/status", 200)
    wait_for(lambda: w.json("GET", f"{ns}/pods/q", 200)["status"].get("phase") == "Running",
             what="pod q running (its log is served from then on; before, a 400 as the API server gives)")
    w.call("GET", f"{ns}/pods/q/log", 200)

    # errors
    w.call("GET", "/nope", 404)
    w.call("GET", "/api/v1/nopes", 404)
    w.call("GET", "/openapi/v3/apis/nope/v1", 404)
    w.call("GET", f"{ns}/pods/missing", 404)
    w.call("DELETE", f"{ns}/configmaps/missing", 404)
    w.call("PUT", f"{ns}/configmaps", 405)
    w.call("POST", f"{ns}/configmaps", 400, b"{not json")
    w.call("POST", f"{ns}/configmaps", 400, {"kind": "Pod", "metadata": {"name": "x"}})
    w.call("GET", f"{ns}/pods?labelSelector=a%20in%20(", 400)
    w.call("GET", f"{ns}/pods/q/exec?command=true", 400)  # not a websocket upgrade
    w.call("POST", f"{ns}/configmaps", 413, b"x" * (MAX_BODY + 1))
    w.call("PATCH", f"{ns}/pods/q", 415, b"{}", content_type="text/plain")
    w.call("POST", f"{ns}/configmaps", 422, {"metadata": {}})
    w.call("POST", "/sandbox/faults", 400, {"hang_selector": "a in ("})
    w.call("POST", "/sandbox/faults", 200, {"compact": True})
    w.call("GET", f"{ns}/pods?watch=true&resourceVersion=1", 200, lines=1)  # an ERROR event: 410 Expired
    w.call("POST", "/sandbox/faults", 200, {"fail_share": 1})
    w.call("GET", f"{ns}/configmaps", 500)
    w.call("GET", f"{ns}/pods?watch=true", 500)
    w.call("POST", "/sandbox/faults", 200, {"fail_share": 0})


def not_json(e: Exchange) -> str | None:
    """The Content-Type kube-apiserver gives a route that does not answer JSON; None for the JSON ones."""
    if e.accept == PROTOBUF:
        return "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # kube-openapi's handler
    if e.path == "/healthz":
        return "text/plain; charset=utf-8"
    if e.path.endswith("/log"):
        return "text/plain"
    return None


@pytest.fixture(scope="module")
def exchanges(tmp_path_factory) -> list[Exchange]:
    from kvc_sandbox import Sandbox

    with Sandbox(workdir=tmp_path_factory.mktemp("wire")) as sandbox:
        walker = Walker(sandbox.url)
        walk(walker)
        return walker.exchanges


def test_the_walk_gets_the_status_kube_apiserver_would_give_on_every_route(exchanges):
    wrong = [f"{e} (expected {e.expected}): {e.body[:200]!r}" for e in exchanges if e.status != e.expected]
    assert not wrong, "\n".join(wrong)
    assert {e.status for e in exchanges} == {200, 201, 400, 404, 405, 409, 413, 415, 422, 500}


def test_every_json_response_says_application_json_without_charset(exchanges):
    wrong = [f"{e}: {e.content_types}" for e in exchanges
             if not not_json(e) and e.content_types != ["application/json"]]
    assert not wrong, "\n".join(wrong)


def test_watch_streams_are_chunked_json(exchanges):
    streams = [e for e in exchanges if e.watch and e.status == 200]
    assert len(streams) == 11
    wrong = [f"{e}: {e.content_types} {e.transfer_encoding}" for e in streams
             if e.content_types != ["application/json"] or e.transfer_encoding != "chunked"]
    assert not wrong, "\n".join(wrong)


def test_every_json_body_is_one_compact_line_ending_in_a_newline(exchanges):
    wrong = []
    for e in exchanges:
        if not_json(e):
            continue
        for line in e.lines if e.watch and e.status == 200 else [e.body]:
            if not line.endswith(b"\n") or line.count(b"\n") != 1:
                wrong.append(f"{e}: {line[-80:]!r}")
            else:
                json.loads(line)
    assert not wrong, "\n".join(wrong)


def test_a_watch_from_a_compacted_version_is_a_410_error_event_line(exchanges):
    expired = next(e for e in exchanges if "resourceVersion=1" in e.path)
    event = json.loads(expired.lines[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_routes_that_are_not_json_keep_kube_apiservers_content_types(exchanges):
    others = [e for e in exchanges if not_json(e)]
    assert len(others) == 3
    wrong = [f"{e}: {e.content_types}" for e in others if e.content_types != [not_json(e)]]
    assert not wrong, "\n".join(wrong)
