"""The core/v1 calls the controller makes, on the official client's `ApiClient`, without `CoreV1Api`.

Why not `CoreV1Api`: in the kubernetes client 37 every generated method is wrapped in pydantic's
`validate_call`, so importing the class costs about 21 MB of RSS (measured: 43 → 65 MB), an eighth of
the controller at 1 000 pods, and every call validates its arguments. `CoreV1` builds the same requests
through the `ApiClient`'s public `param_serialize` / `call_api` / `response_deserialize`, as the
generated methods do: same paths, query parameters, headers, bearer-token auth and errors
(`ApiException` and its subclasses for a status outside 2xx).

The methods keep `CoreV1Api`'s names and arguments (the subset this controller calls). Exec is not a
REST call: `exec_request` gives the URL and headers the generated `connect_get_namespaced_pod_exec` would
send (its query, the bearer token as the configuration gives it now), and websockets.py opens the
websocket with them.

Every REST method takes `_preload_content` (False: the raw `urllib3` response, unread, as the generated
methods return it) and `_request_timeout`. Concurrency: as the `ApiClient` it is built on (building a
request only reads it: any thread may).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

JSON = "application/json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_POD = "/api/v1/namespaces/{namespace}/pods/{name}"


class CoreV1:
    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    # -- pods ---------------------------------------------------------------------------------------

    def read_namespaced_pod(self, name: str, namespace: str, **options) -> Any:
        return self._call("GET", _POD, {"name": name, "namespace": namespace}, response_type="V1Pod", **options)

    def list_namespaced_pod(self, namespace: str, **options) -> Any:
        query, options = _list_query(options)
        return self._call("GET", "/api/v1/namespaces/{namespace}/pods", {"namespace": namespace}, query,
                          response_type="V1PodList", **options)

    def list_pod_for_all_namespaces(self, **options) -> Any:
        query, options = _list_query(options)
        return self._call("GET", "/api/v1/pods", {}, query, response_type="V1PodList", **options)

    def patch_namespaced_pod_status(self, name: str, namespace: str, body: Any, **options) -> Any:
        """A strategic merge patch (the body is an object, not a JSON Patch list). Returns the response
        body as bytes, unparsed: the controller never reads the pod that comes back, and building a
        `V1Pod` of it was most of a patch's CPU under churn (a py-spy profile)."""
        return self._call("PATCH", _POD + "/status", {"name": name, "namespace": namespace}, body=body,
                          content_type=STRATEGIC_MERGE_PATCH, response_type="bytearray", **options)

    def exec_request(self, name: str, namespace: str, *, command: list[str], container: str, stdin: bool,
                     stdout: bool, stderr: bool, tty: bool) -> tuple[str, dict[str, str]]:
        """(URL, headers) of the exec request `CoreV1Api.connect_get_namespaced_pod_exec` would send."""
        query = [("command", command), ("container", container), ("stderr", stderr), ("stdin", stdin),
                 ("stdout", stdout), ("tty", tty)]
        _, url, headers, _, _ = self._request("GET", _POD + "/exec", {"name": name, "namespace": namespace}, query,
                                              accept="*/*", collection_formats={"command": "multi"})
        return url, headers

    # -- ConfigMaps and Events ----------------------------------------------------------------------

    def read_namespaced_config_map(self, name: str, namespace: str, **options) -> Any:
        return self._call("GET", "/api/v1/namespaces/{namespace}/configmaps/{name}",
                          {"name": name, "namespace": namespace}, response_type="V1ConfigMap", **options)

    def list_namespaced_config_map(self, namespace: str, **options) -> Any:
        query, options = _list_query(options)
        return self._call("GET", "/api/v1/namespaces/{namespace}/configmaps", {"namespace": namespace}, query,
                          response_type="V1ConfigMapList", **options)

    def create_namespaced_event(self, namespace: str, body: Any, **options) -> Any:
        """Without a Content-Type, as the generated method sends it (the REST client sends the body as JSON)."""
        return self._call("POST", "/api/v1/namespaces/{namespace}/events", {"namespace": namespace}, body=body,
                          response_type="CoreV1Event", **options)

    # -- the one request path -----------------------------------------------------------------------

    def _call(self, method: str, path: str, path_params: dict[str, str], query: list[tuple[str, Any]] = (), *,
              response_type: str, body: Any = None, content_type: str | None = None, accept: str = JSON,
              collection_formats: dict[str, str] | None = None, _preload_content: bool = True,
              _request_timeout: Any = None) -> Any:
        request = self._request(method, path, path_params, query, body=body, content_type=content_type,
                                accept=accept, collection_formats=collection_formats)
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        if not _preload_content:
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response
        response.read()
        return self.api_client.response_deserialize(response, {"2XX": response_type}).data

    def _request(self, method: str, path: str, path_params: dict[str, str], query: list[tuple[str, Any]] = (), *,
                 body: Any = None, content_type: str | None = None, accept: str = JSON,
                 collection_formats: dict[str, str] | None = None) -> tuple:
        """(method, URL, headers, body, post parameters), as the generated methods serialize a request."""
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.api_client.param_serialize(
            method=method, resource_path=path, path_params=path_params,
            query_params=[(key, value) for key, value in query if value is not None], header_params=headers,
            body=body, auth_settings=["BearerToken"], collection_formats=collection_formats or {})


#: the list and watch query parameters, in the generated methods' order
_LIST_PARAMETERS = ("allow_watch_bookmarks", "field_selector", "label_selector", "resource_version",
                    "timeout_seconds", "watch")


def _list_query(options: dict[str, Any]) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Split a list call's keyword arguments into its query (camelCase, as the API spells them) and the
    rest; an argument that is neither is a programming error, as with the generated methods."""
    rest = {key: value for key, value in options.items() if key not in _LIST_PARAMETERS}
    unknown = [key for key in rest if key not in ("_preload_content", "_request_timeout")]
    if unknown:
        raise TypeError(f"unexpected list arguments: {', '.join(unknown)}")
    query = [(_camel(key), options[key]) for key in _LIST_PARAMETERS if key in options]
    return query, rest


def _camel(name: str) -> str:
    head, *tail = name.split("_")
    return head + "".join(word.title() for word in tail)
