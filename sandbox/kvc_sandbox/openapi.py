"""Minimal OpenAPI documents: just enough for kubectl to validate manifests with `--validate` on (its default).

kubectl (≥ 1.27) validates manifests before `create`/`apply`: it reads `/openapi/v3`, then the group-version's
document, and looks for a PATCH operation tagged with the object's `x-kubernetes-group-version-kind` that
takes a `fieldValidation` query parameter. If it finds one it leaves validation to the server (which the
sandbox does loosely). Otherwise — always for a `kind: List`, which no document names — it validates on the
client against `/openapi/v2` (each item of a List against its kind's definition; a kind without one is
skipped), and refuses to create anything when it cannot get that document.

One schema per kind (`schema`) serves both versions: under `components.schemas` in v3, under `definitions` in
v2, named as kube-apiserver names them. Each says only "an object of this kind": the sandbox does not check
fields, on either side. v2 carries no paths: kubectl reads it only for those definitions.

Pure functions of the static resource table; safe from any thread.
"""

from __future__ import annotations

import hashlib
import json

from .resources import RESOURCES, VERSION, Resource

_FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                     "description": "fieldValidation instructs the server on how to handle objects in the "
                                    "request containing unknown or duplicate fields."}
_INFO = {"title": "Kubernetes", "version": VERSION["gitVersion"]}


def model_name(r: Resource) -> str:
    """The name kube-apiserver gives a kind's schema: `io.k8s.api.core.v1.Pod`, `io.k8s.api.apps.v1.Deployment`."""
    package = r.group.split(".")[0] if r.group else "core"
    return f"io.k8s.api.{package}.{r.version}.{r.kind}"


def schema(r: Resource) -> dict:
    """A kind's one schema, in v3's `components.schemas` and v2's `definitions` alike: an object of that kind
    (the extension is how kubectl finds it), its fields unchecked."""
    return {"description": f"{r.kind} is served by the sandbox, which checks no fields.", "type": "object",
            "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.kind, "version": r.version}]}


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
    return {"openapi": "3.0.0", "info": _INFO, "paths": paths,
            "components": {"schemas": {model_name(r): schema(r) for r in served}}}


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()


def index() -> dict:
    paths = {}
    for group, version in dict.fromkeys((r.group, r.version) for r in RESOURCES):
        doc = group_version_doc(group, version)
        paths[_gv_path(group, version)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}"
                                                                f"?hash={_hash(doc)}"}
    return {"paths": paths}


def swagger() -> dict:
    """The `/openapi/v2` document (JSON; openapi_proto.py encodes it as kubectl asks for it)."""
    return {"swagger": "2.0", "info": _INFO, "paths": {},
            "definitions": {model_name(r): schema(r) for r in RESOURCES}}
