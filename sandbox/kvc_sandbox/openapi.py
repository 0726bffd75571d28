"""Minimal OpenAPI v3 documents: just enough for kubectl to choose server-side field validation.

kubectl (≥ 1.27) validates manifests before `create`/`apply`: it reads `/openapi/v3`, then the group-version's
document, and looks for a PATCH operation tagged with the object's `x-kubernetes-group-version-kind` that
takes a `fieldValidation` query parameter. If it finds one it leaves validation to the server (which the
sandbox does loosely); otherwise it wants full schemas from `/openapi/v2`, and without them it refuses
to create anything unless given `--validate=false`. So each operation here carries only that.

Pure functions of the static resource table; safe from any thread.
"""

from __future__ import annotations

import hashlib
import json

from .resources import RESOURCES

_FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                     "description": "fieldValidation instructs the server on how to handle objects in the "
                                    "request containing unknown or duplicate fields."}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def group_version_doc(group: str, version: str) -> dict | None:
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    paths = {}
    for r in served:
        base = "/" + _gv_path(group, version)
        item = f"{base}/namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced else f"{base}/{r.plural}/{{name}}"
        paths[item] = {"patch": {
            "operationId": f"patch{r.kind}",
            "parameters": [_FIELD_VALIDATION],
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": paths,
            "components": {"schemas": {}}}


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()


def index() -> dict:
    paths = {}
    for group, version in dict.fromkeys((r.group, r.version) for r in RESOURCES):
        doc = group_version_doc(group, version)
        paths[_gv_path(group, version)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}"
                                                                f"?hash={_hash(doc)}"}
    return {"paths": paths}
