"""What a request asks to do, as kube-apiserver's authorizers see it (its `RequestInfoFactory`).

`/api/v1/...` and `/apis/GROUP/VERSION/...` with a resource are resource requests: verb from the method
(POST create, GET get, PUT update, PATCH patch, DELETE delete), then a GET without a name is `list`, or
`watch` with `?watch=true`; a DELETE without a name is `deletecollection`; a list or watch whose field
selector requires `metadata.name=X` is about the object X (so `resourceNames` rules apply to it). The
namespace is the URL's; for `/api/v1/namespaces/NAME` it is NAME itself. Subresources come after the
name (`pods/exec`, `deployments/scale`). The legacy `/watch/` and `/proxy/` path prefixes set the verb.
Everything else (`/api`, `/apis/apps/v1`, `/version`, `/healthz`, `/openapi/v3`, ...) is a non-resource
request whose verb is the lower-case method.

A websocket upgrade (a GET) to `pods/exec`, `pods/attach` or `pods/portforward` must be allowed `create`
(recent kube-apiservers check it, as for the POST that SPDY clients send) and, as every kube-apiserver
checks for a GET, `get`: `checks()` returns both, `create` first.

Pure functions and frozen values: safe from any thread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}
_PATH_VERBS = ("proxy", "watch")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_UPGRADE_SUBRESOURCES = ("exec", "attach", "portforward")
#: `?watch=` values that are not a watch: Go's strconv.ParseBool false values (any other value is a watch,
#: also one ParseBool refuses: kube-apiserver then falls back to "not false or 0").
_NOT_WATCH = ("", "0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True, slots=True)
class Attributes:
    verb: str
    #: the URL path (what non-resource rules match).
    path: str
    resource_request: bool = False
    api_group: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def _valid_name(name: str) -> bool:
    """apimachinery's IsValidPathSegmentName."""
    return name not in ("", ".", "..") and "/" not in name and "%" not in name


def _field_selector_name(selector: str) -> str:
    """X when the field selector requires `metadata.name=X` (or `==`), else ""."""
    for term in selector.split(","):
        if "!=" in term:
            continue
        key, sep, value = term.replace("==", "=").partition("=")
        if sep and key.strip() == "metadata.name" and _valid_name(value.strip()):
            return value.strip()
    return ""


def attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The attributes of one request; see the module docstring."""
    non_resource = Attributes(verb=method.lower(), path=path)
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    parts = parts[1:]  # the version
    verb = _METHOD_VERBS.get(method.upper(), "")
    via_path = parts[0] in _PATH_VERBS
    if via_path:
        if len(parts) < 2:
            return non_resource
        verb, parts = parts[0], parts[1:]
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "list" if query.get("watch", "") in _NOT_WATCH else "watch"
        name = _field_selector_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb=verb, path=path, resource_request=True, api_group=group, namespace=namespace,
                      resource=resource, subresource=subresource, name=name)


def checks(method: str, path: str, query: Mapping[str, str], websocket: bool) -> list[Attributes]:
    """Every authorization check the request must pass, in order (the first denial is reported)."""
    request = attributes(method, path, query)
    if websocket and request.verb == "get" and request.subresource in _UPGRADE_SUBRESOURCES:
        return [dataclasses.replace(request, verb="create"), request]
    return [request]
