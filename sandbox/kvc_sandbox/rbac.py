"""RBAC as kube-apiserver's authorizer evaluates it, over Roles, ClusterRoles and their bindings as dicts.

A request (requestinfo.Attributes) is allowed when a rule of a role bound to the user allows it:
- ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant their Role, or the
  ClusterRole they reference, only in the binding's namespace (and only for requests in a namespace:
  listing pods across all namespaces needs a ClusterRoleBinding).
- Subjects: `ServiceAccount` (its namespace defaults to the RoleBinding's), `User` by name, `Group`
  among the user's groups (`system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`).
- A rule matches when its verbs hold the verb or `*`, its apiGroups the group or `*`, its resources the
  resource (`pods`), or `resource/subresource` (`pods/exec`: `pods` alone does not cover it), or `*`, or
  `*/subresource`; its resourceNames (when given) the object's name. Non-resource requests match
  nonResourceURLs: exact, `*`, or a prefix ending in `*`.
- Built in, as kube-apiserver's bootstrap policy binds them to every authenticated user (not stored, so
  listing ClusterRoles shows only what was created): `system:discovery` and `system:public-info-viewer`
  (GET /api, /apis, /version, /openapi, /healthz... for discovery) and `system:basic-user`
  (SelfSubjectAccessReviews, for `kubectl auth can-i`). Aggregated ClusterRoles are not aggregated.
A denial says why like kube-apiserver (`forbidden()`), with `RBAC: ...` appended when a binding refers to
a role that does not exist.

Pure: no I/O, no aiohttp; the roles come from a `Policy` (the store's, or `Objects` built from a list).
Safe from any thread as long as the policy is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

from .authn import User
from .requestinfo import Attributes

GROUP = "rbac.authorization.k8s.io"
_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/"]
_PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _builtin(name: str, rules: list[dict], groups: list[str]) -> tuple[dict, dict]:
    role = {"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}
    binding = {"kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
               "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups]}
    return role, binding


BUILTIN = (
    _builtin("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}],
             ["system:authenticated"]),
    _builtin("system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_INFO_URLS, "verbs": ["get"]}],
             ["system:authenticated", "system:unauthenticated"]),
    _builtin("system:basic-user", [{"apiGroups": ["authorization.k8s.io"],
                                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                                    "verbs": ["create"]}],
             ["system:authenticated"]),
)
_BUILTIN_ROLES = {role["metadata"]["name"]: role for role, _ in BUILTIN}


class Policy(Protocol):
    def cluster_role_bindings(self) -> Iterable[dict]: ...
    def role_bindings(self, namespace: str) -> Iterable[dict]: ...
    def cluster_role(self, name: str) -> dict | None: ...
    def role(self, namespace: str, name: str) -> dict | None: ...


class Objects:
    """A `Policy` over a list of RBAC objects (manifests as dicts; other kinds are ignored)."""

    def __init__(self, objects: Iterable[dict]):
        self._objects = [o for o in objects if o and o.get("kind") in
                         ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]

    def _of(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [o for o in self._objects if o["kind"] == kind
                and (namespace is None or o["metadata"].get("namespace", "default") == namespace)]

    def cluster_role_bindings(self) -> list[dict]:
        return self._of("ClusterRoleBinding")

    def role_bindings(self, namespace: str) -> list[dict]:
        return self._of("RoleBinding", namespace)

    def cluster_role(self, name: str) -> dict | None:
        return next((o for o in self._of("ClusterRole") if o["metadata"]["name"] == name), None)

    def role(self, namespace: str, name: str) -> dict | None:
        return next((o for o in self._of("Role", namespace) if o["metadata"]["name"] == name), None)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: `RBAC: allowed by ...` when allowed; when denied, the errors met on the way (usually empty).
    reason: str = ""


# the rule matchers (kubernetes pkg/apis/rbac/v1/evaluation_helpers.go) ---------------------------------
def _verb_matches(rule: dict, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or [])


def _group_matches(rule: dict, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or [])


def _resource_matches(rule: dict, combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def _url_matches(rule: dict, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path) or (url.endswith("*") and path.startswith(url.rstrip("*"))):
            return True
    return False


def rule_allows(attrs: Attributes, rule: dict) -> bool:
    if attrs.resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (_verb_matches(rule, attrs.verb) and _group_matches(rule, attrs.api_group)
                and _resource_matches(rule, combined, attrs.subresource) and _name_matches(rule, attrs.name))
    return _verb_matches(rule, attrs.verb) and _url_matches(rule, attrs.path)


# bindings ----------------------------------------------------------------------------------------------
def _applies(subject: dict, user: User, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
    return False


def _describe(binding: dict, subject: dict) -> str:
    m, ref = binding["metadata"], binding.get("roleRef") or {}
    if subject.get("kind") == "ServiceAccount":
        who = f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or m.get("namespace", "")}"'
    else:
        who = f'{subject.get("kind")} "{subject.get("name")}"'
    if binding["kind"] == "RoleBinding":
        return f'RoleBinding "{m["name"]}/{m.get("namespace", "")}" of {ref.get("kind")} "{ref.get("name")}" to {who}'
    return f'ClusterRoleBinding "{m["name"]}" of {ref.get("kind")} "{ref.get("name")}" to {who}'


def _rules(policy: Policy, ref: dict, namespace: str) -> list[dict]:
    """The rules a roleRef names; LookupError with kube-apiserver's words when it names nothing."""
    kind, name = ref.get("kind"), ref.get("name", "")
    if kind == "ClusterRole":
        role = _BUILTIN_ROLES.get(name) or policy.cluster_role(name)
        if role is None:
            raise LookupError(f'clusterrole.{GROUP} "{name}" not found')
    elif kind == "Role" and namespace:
        role = policy.role(namespace, name)
        if role is None:
            raise LookupError(f'role.{GROUP} "{name}" not found')
    else:
        raise LookupError(f'unsupported role reference kind: "{kind}"')
    return list(role.get("rules") or [])


def authorize(user: User, attrs: Attributes, policy: Policy) -> Decision:
    """Allowed when a rule bound to the user (or one of its groups) allows `attrs`; see the module docstring."""
    bindings: list[tuple[dict, str]] = [(b, "") for _, b in BUILTIN]
    bindings += [(b, "") for b in policy.cluster_role_bindings()]
    if attrs.namespace:
        bindings += [(b, attrs.namespace) for b in policy.role_bindings(attrs.namespace)]
    problems: list[str] = []
    for binding, namespace in bindings:
        subject = next((s for s in binding.get("subjects") or [] if _applies(s, user, namespace)), None)
        if subject is None:
            continue
        try:
            rules = _rules(policy, binding.get("roleRef") or {}, namespace)
        except LookupError as e:
            problems.append(str(e))
            continue
        if any(rule_allows(attrs, rule) for rule in rules):
            return Decision(True, f"RBAC: allowed by {_describe(binding, subject)}")
    if not problems:
        return Decision(False)
    return Decision(False, "RBAC: " + (problems[0] if len(problems) == 1 else f"[{', '.join(problems)}]"))


def _sanitize(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def forbidden(user: User, attrs: Attributes, reason: str = "") -> tuple[str, dict]:
    """The message and Status details of kube-apiserver's 403 for a denied request (its
    responsewriters.ForbiddenStatusError), e.g. `pods "x" is forbidden: User "system:serviceaccount:ns:sa"
    cannot create resource "pods/exec" in API group "" in the namespace "ns"`."""
    if not attrs.resource_request:
        why = f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        why = f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
        why += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    why = _sanitize(why) + (f": {reason}" if reason else "")
    group_resource = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if not group_resource:
        message = f"forbidden: {why}"
    elif not attrs.name:
        message = f"{group_resource} is forbidden: {why}"
    else:
        message = f'{group_resource} "{attrs.name}" is forbidden: {why}'
    details = {k: v for k, v in (("name", attrs.name), ("group", attrs.api_group), ("kind", attrs.resource)) if v}
    return message, details
