"""The kinds the sandbox serves, and the discovery documents built from them.

A static table: immutable, safe from any thread. Each kind is stored the same way (see store.py); the
few with behaviour of their own (pods, deployments) get it from kubelet.py and deployments.py.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    #: subresources served (`status`, `scale`, `exec`, `log`, `token`).
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_resource(self) -> str:
        """`pods`, `deployments.apps`: how the API server names a resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "pods", "Pod", short_names=("po",), subresources=("status", "exec", "log"),
             categories=("all",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
             subresources=("status",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), subresources=("token",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "services", "Service", short_names=("svc",), subresources=("status",),
             categories=("all",)),
    Resource("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), subresources=("status",)),
    Resource("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
             subresources=("status", "scale"), categories=("all",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=("status",),
             categories=("all",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    # stored only (no eviction API): the install carries one (`kubectl apply -k deploy`)
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
             subresources=("status",)),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
             namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
)

BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    if _r.group and _r.version not in GROUPS.setdefault(_r.group, []):
        GROUPS[_r.group].append(_r.version)

PODS = BY_PATH[("", "v1", "pods")]
DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]
REPLICASETS = BY_PATH[("apps", "v1", "replicasets")]
NAMESPACES = BY_PATH[("", "v1", "namespaces")]
NODES = BY_PATH[("", "v1", "nodes")]
EVENTS = BY_PATH[("", "v1", "events")]


def _subresource_verbs(sub: str) -> list[str]:
    if sub == "exec":
        return ["create", "get"]
    if sub == "log":
        return ["get"]
    if sub == "token":
        return ["create"]
    return ["get", "patch", "update"]


def resource_list(group: str, version: str) -> dict | None:
    """The APIResourceList of `/api/v1` or `/apis/GROUP/VERSION`, None for an unknown one."""
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    entries: list[dict] = []
    for r in served:
        entry = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(_ALL_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            kind = {"scale": "Scale", "exec": "PodExecOptions", "log": "Pod", "token": "TokenRequest"}.get(sub, r.kind)
            sub_entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                         "kind": kind, "verbs": _subresource_verbs(sub)}
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1")
            if sub == "token":
                sub_entry.update(group="authentication.k8s.io", version="v1")
            entries.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": served[0].api_version,
            "resources": entries}


def core_versions() -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def _group(name: str) -> dict:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in GROUPS[name]]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS]}


def group(name: str) -> dict | None:
    if name not in GROUPS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}
