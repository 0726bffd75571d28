"""The sandbox's RBAC evaluator and request attributes, without a server: one test per rule kind."""

from __future__ import annotations

import pytest
from kvc_sandbox import rbac
from kvc_sandbox.authn import ADMIN, service_account_user
from kvc_sandbox.requestinfo import Attributes, attributes, checks

SA = service_account_user("team", "bot")
GROUP = "rbac.authorization.k8s.io"


def role(name: str, rules: list[dict], namespace: str | None = None) -> dict:
    kind = "Role" if namespace else "ClusterRole"
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict], namespace: str | None = None) -> dict:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role_name},
            "subjects": subjects}


def sa(name: str = "bot", namespace: str | None = "team") -> dict:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


def allowed(objects: list[dict], method: str, path: str, query: dict | None = None, user=SA) -> bool:
    policy = rbac.Objects(objects)
    return all(rbac.authorize(user, a, policy).allowed for a in checks(method, path, query or {}, False))


def cluster_grant(rules: list[dict], subject: dict | None = None) -> list[dict]:
    return [role("r", rules), binding("b", "ClusterRole", "r", [subject or sa()])]


# request attributes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,query,verb", [
    ("GET", "/api/v1/namespaces/ns/pods", {}, "list"),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, "watch"),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1"}, "watch"),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "false"}, "list"),
    ("GET", "/api/v1/namespaces/ns/pods/p", {}, "get"),
    ("POST", "/api/v1/namespaces/ns/pods", {}, "create"),
    ("PUT", "/api/v1/namespaces/ns/pods/p", {}, "update"),
    ("PATCH", "/api/v1/namespaces/ns/pods/p", {}, "patch"),
    ("DELETE", "/api/v1/namespaces/ns/pods/p", {}, "delete"),
    ("DELETE", "/api/v1/namespaces/ns/pods", {}, "deletecollection"),
])
def test_verbs_are_derived_like_kube_apiserver(method, path, query, verb):
    assert attributes(method, path, query).verb == verb


def test_attributes_of_urls():
    assert attributes("GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {}) == Attributes(
        verb="get", path="/apis/apps/v1/namespaces/ns/deployments/d/scale", resource_request=True,
        api_group="apps", namespace="ns", resource="deployments", subresource="scale", name="d")
    everywhere = attributes("GET", "/api/v1/pods", {"labelSelector": "a=b"})
    assert (everywhere.verb, everywhere.namespace, everywhere.resource) == ("list", "", "pods")
    namespace = attributes("GET", "/api/v1/namespaces/ns", {})
    assert (namespace.resource, namespace.name, namespace.namespace) == ("namespaces", "ns", "ns")
    assert attributes("GET", "/api/v1/namespaces/ns/configmaps", {"fieldSelector": "metadata.name=cm"}).name == "cm"
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/version", "/openapi/v3/api/v1", "/sandbox/faults"):
        assert not attributes("GET", path, {}).resource_request, path


def test_a_websocket_exec_needs_create_then_get_and_a_post_needs_create():
    path = "/api/v1/namespaces/ns/pods/p/exec"
    assert [a.verb for a in checks("GET", path, {"command": "ls"}, True)] == ["create", "get"]
    assert [a.verb for a in checks("POST", path, {}, False)] == ["create"]
    assert checks("GET", path, {}, True)[0].subresource == "exec"


# rules -------------------------------------------------------------------------------------------------
def test_verbs_and_the_verb_wildcard():
    objects = cluster_grant([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    assert allowed(objects, "GET", "/api/v1/namespaces/x/pods/p")
    assert allowed(objects, "GET", "/api/v1/pods")
    assert not allowed(objects, "GET", "/api/v1/pods", {"watch": "true"})
    assert not allowed(objects, "DELETE", "/api/v1/namespaces/x/pods/p")
    every = cluster_grant([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
    assert allowed(every, "DELETE", "/api/v1/namespaces/x/pods")


def test_api_groups_and_the_group_wildcard():
    core = cluster_grant([{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}])
    assert allowed(core, "POST", "/api/v1/namespaces/x/events")
    assert not allowed(core, "POST", "/apis/events.k8s.io/v1/namespaces/x/events")
    every = cluster_grant([{"apiGroups": ["*"], "resources": ["events"], "verbs": ["create"]}])
    assert allowed(every, "POST", "/apis/events.k8s.io/v1/namespaces/x/events")


def test_a_resource_does_not_cover_its_subresources():
    pods = cluster_grant([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
    assert not allowed(pods, "POST", "/api/v1/namespaces/x/pods/p/exec")
    assert not allowed(pods, "GET", "/api/v1/namespaces/x/pods/p/log")
    assert not allowed(pods, "PUT", "/api/v1/namespaces/x/pods/p/status")
    exec_ = cluster_grant([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    assert allowed(exec_, "POST", "/api/v1/namespaces/x/pods/p/exec")
    assert not allowed(exec_, "GET", "/api/v1/namespaces/x/pods/p")
    scale = cluster_grant([{"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}])
    assert allowed(scale, "PATCH", "/apis/apps/v1/namespaces/x/deployments/d/scale")
    assert not allowed(scale, "PATCH", "/apis/apps/v1/namespaces/x/deployments/d")


def test_resource_wildcards():
    everything = cluster_grant([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}])
    assert allowed(everything, "GET", "/api/v1/namespaces/x/pods/p/log")
    assert allowed(everything, "GET", "/api/v1/namespaces/x/secrets/s")
    statuses = cluster_grant([{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]}])
    assert allowed(statuses, "PUT", "/api/v1/namespaces/x/pods/p/status")
    assert allowed(statuses, "PUT", "/apis/apps/v1/namespaces/x/deployments/d/status")
    assert not allowed(statuses, "PUT", "/api/v1/namespaces/x/pods/p")
    assert not allowed(statuses, "PUT", "/apis/apps/v1/namespaces/x/deployments/d/scale")


def test_resource_names():
    objects = cluster_grant([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"],
                              "verbs": ["get", "list", "watch"]}])
    assert allowed(objects, "GET", "/api/v1/namespaces/x/configmaps/mine")
    assert not allowed(objects, "GET", "/api/v1/namespaces/x/configmaps/other")
    assert not allowed(objects, "GET", "/api/v1/namespaces/x/configmaps")
    assert allowed(objects, "GET", "/api/v1/namespaces/x/configmaps",
                   {"watch": "true", "fieldSelector": "metadata.name=mine"})


def test_non_resource_urls_exact_and_prefix():
    objects = cluster_grant([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}])
    assert allowed(objects, "GET", "/metrics")
    assert allowed(objects, "GET", "/logs/a/b")
    assert not allowed(objects, "GET", "/metricsx")
    assert not allowed(objects, "POST", "/metrics")
    assert not allowed(objects, "POST", "/sandbox/faults")


def test_discovery_is_allowed_to_every_authenticated_user_and_nothing_else():
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/version", "/openapi/v3", "/openapi/v2",
                 "/healthz"):
        assert allowed([], "GET", path), path
    assert not allowed([], "GET", "/api/v1/namespaces/team/pods")
    assert allowed([], "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")


# bindings and scope ------------------------------------------------------------------------------------
def test_a_role_binding_grants_only_in_its_namespace():
    objects = [role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], namespace="a"),
               binding("b", "Role", "r", [sa()], namespace="a")]
    assert allowed(objects, "GET", "/api/v1/namespaces/a/pods")
    assert not allowed(objects, "GET", "/api/v1/namespaces/b/pods")
    assert not allowed(objects, "GET", "/api/v1/pods")


def test_a_cluster_role_bound_by_a_role_binding_grants_only_in_that_namespace():
    objects = [role("r", [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list"]}]),
               binding("b", "ClusterRole", "r", [sa()], namespace="a")]
    assert allowed(objects, "GET", "/api/v1/namespaces/a/pods")
    assert not allowed(objects, "GET", "/api/v1/namespaces/b/pods")
    assert not allowed(objects, "GET", "/api/v1/pods")
    assert not allowed(objects, "GET", "/api/v1/nodes")


def test_a_cluster_role_binding_grants_everywhere():
    objects = cluster_grant([{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list"]}])
    assert allowed(objects, "GET", "/api/v1/namespaces/a/pods")
    assert allowed(objects, "GET", "/api/v1/pods")
    assert allowed(objects, "GET", "/api/v1/nodes")


def test_service_account_subjects_match_name_and_namespace():
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    assert not allowed(cluster_grant(rules, sa("other")), "GET", "/api/v1/pods")
    assert not allowed(cluster_grant(rules, sa(namespace="elsewhere")), "GET", "/api/v1/pods")
    # in a RoleBinding a subject without a namespace means the binding's; in a ClusterRoleBinding nothing
    local = [role("r", rules, namespace="team"), binding("b", "Role", "r", [sa(namespace=None)], namespace="team")]
    assert allowed(local, "GET", "/api/v1/namespaces/team/pods")
    assert not allowed(cluster_grant(rules, sa(namespace=None)), "GET", "/api/v1/pods")
    user = {"kind": "User", "name": "system:serviceaccount:team:bot"}
    assert allowed(cluster_grant(rules, user), "GET", "/api/v1/pods")


@pytest.mark.parametrize("group,granted", [("system:serviceaccounts", True), ("system:serviceaccounts:team", True),
                                           ("system:serviceaccounts:other", False), ("system:authenticated", True),
                                           ("system:masters", False)])
def test_group_subjects(group, granted):
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    assert allowed(cluster_grant(rules, {"kind": "Group", "name": group}), "GET", "/api/v1/pods") is granted


def test_a_binding_to_a_missing_role_denies_and_says_why():
    objects = [binding("b", "ClusterRole", "ghost", [sa()])]
    attrs = attributes("GET", "/api/v1/pods", {})
    decision = rbac.authorize(SA, attrs, rbac.Objects(objects))
    assert not decision.allowed
    assert decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found'


def test_the_allowing_binding_is_named():
    objects = cluster_grant([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    decision = rbac.authorize(SA, attributes("GET", "/api/v1/pods", {}), rbac.Objects(objects))
    assert decision.reason == 'RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to ServiceAccount "bot/team"'


# denial wording ----------------------------------------------------------------------------------------
def test_forbidden_messages_are_worded_like_kube_apiserver():
    def message(method: str, path: str, query: dict | None = None, websocket: bool = False) -> str:
        return rbac.forbidden(SA, checks(method, path, query or {}, websocket)[0])[0]

    user = 'User "system:serviceaccount:team:bot"'
    assert message("GET", "/api/v1/namespaces/team/pods/p/exec", {"command": "ls"}, True) == (
        f'pods "p" is forbidden: {user} cannot create resource "pods/exec" in API group "" in the namespace "team"')
    assert message("GET", "/api/v1/pods") == (
        f'pods is forbidden: {user} cannot list resource "pods" in API group "" at the cluster scope')
    assert message("DELETE", "/apis/apps/v1/namespaces/team/deployments/d") == (
        f'deployments.apps "d" is forbidden: {user} cannot delete resource "deployments" in API group "apps" '
        'in the namespace "team"')
    assert message("POST", "/sandbox/faults") == f'forbidden: {user} cannot post path "/sandbox/faults"'
    _, details = rbac.forbidden(SA, attributes("GET", "/apis/apps/v1/namespaces/t/deployments/d", {}))
    assert details == {"name": "d", "group": "apps", "kind": "deployments"}


def test_the_admin_is_in_system_masters():
    assert ADMIN.privileged and not SA.privileged
