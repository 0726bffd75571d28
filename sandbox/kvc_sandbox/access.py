"""Who may do what: the one access step every API request passes before its handler, and
SelfSubjectAccessReviews (`kubectl auth can-i`).

The two listeners (runner.py) differ only in how a request without a credential is treated:
- plain HTTP on 127.0.0.1: only the local user who runs the sandbox may connect (peers.py; another
  user gets 403, whatever it sends); a request from it without an `Authorization` header is the admin
  (kubectl sends no token over plain HTTP). This is the fast path of the tests and benches.
- HTTPS (127.0.0.1 and any extra addresses, e.g. the pods' gateway): anyone may connect, so every
  request needs a valid bearer token, else 401 `Unauthorized` as kube-apiserver answers.
On either, a bearer token that is not valid is a 401, and a service account's request is authorized by
RBAC (rbac.py, over the stored Roles, ClusterRoles and bindings); a denial is kube-apiserver's 403.
The admin (group `system:masters`) is never checked.

Impersonation, as kube-apiserver's WithImpersonation filter: `Impersonate-User` (a service account's
`system:serviceaccount:NS:NAME` or any user name), `Impersonate-Group` (repeatable), `Impersonate-Uid`
and `Impersonate-Extra-KEY` make the request the impersonated user's, once the authenticated user is
allowed the verb `impersonate` on each (`users`, `serviceaccounts` in NS, `groups`; `uids` and
`userextras/KEY` in `authentication.k8s.io`), else kube-apiserver's 403 for the first one denied. Without
`Impersonate-Group`, a service account gets its account's groups, and any user except
`system:anonymous` gets `system:authenticated`. Groups, a uid or extras without a user: 500, as there.
So `kubectl auth can-i VERB RESOURCE --as=system:serviceaccount:NS:NAME` answers for that account.

Concurrency contract: called on the sandbox's event loop by the API middleware; reads the store and the
tokens synchronously, so a request is judged against one consistent set of roles and bindings.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDictProxy

from . import errors, peers, rbac, requestinfo
from .authn import ADMIN, AUTHENTICATED, Tokens, User, service_account_user
from .resources import BY_PATH
from .store import Store

REVIEWS_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
CLUSTER_ROLES = BY_PATH[("rbac.authorization.k8s.io", "v1", "clusterroles")]
CLUSTER_ROLE_BINDINGS = BY_PATH[("rbac.authorization.k8s.io", "v1", "clusterrolebindings")]
ROLES = BY_PATH[("rbac.authorization.k8s.io", "v1", "roles")]
ROLE_BINDINGS = BY_PATH[("rbac.authorization.k8s.io", "v1", "rolebindings")]
AUTHENTICATION = "authentication.k8s.io"
ANONYMOUS = "system:anonymous"
EXTRA = "Impersonate-Extra-"


def _service_account(name: str) -> tuple[str, str]:
    """(namespace, account) of a `system:serviceaccount:NS:NAME` user name, ("", "") for other users."""
    prefix, _, rest = name.partition("system:serviceaccount:")
    namespace, _, account = rest.partition(":")
    if prefix or not namespace or not account or ":" in account:
        return "", ""
    return namespace, account


def unauthorized() -> errors.ApiError:
    return errors.ApiError(401, "Unauthorized", "Unauthorized")


class StorePolicy:
    """rbac.Policy over the store's RBAC objects."""

    def __init__(self, store: Store):
        self._store = store

    def cluster_role_bindings(self) -> list[dict]:
        return self._store.list(CLUSTER_ROLE_BINDINGS)

    def role_bindings(self, namespace: str) -> list[dict]:
        return self._store.list(ROLE_BINDINGS, namespace)

    def cluster_role(self, name: str) -> dict | None:
        return self._store.get(CLUSTER_ROLES, "", name)

    def role(self, namespace: str, name: str) -> dict | None:
        return self._store.get(ROLES, namespace, name)


class Access:
    def __init__(self, store: Store, tokens: Tokens):
        self.tokens = tokens
        self.policy = StorePolicy(store)

    def check(self, request: web.Request) -> User:
        """The request's user (impersonated, when it asks and may) if it may go on; an ApiError (401, 403,
        500 for impersonation headers without a user) otherwise."""
        user = self.impersonate(self.authenticate(request), request.headers)
        if not user.privileged:
            websocket = request.headers.get("Upgrade", "").lower() == "websocket"
            for attrs in requestinfo.checks(request.method, request.path, request.query, websocket):
                decision = rbac.authorize(user, attrs, self.policy)
                if not decision.allowed:
                    message, details = rbac.forbidden(user, attrs, decision.reason)
                    raise errors.ApiError(403, "Forbidden", message, details or None)
        return user

    def authenticate(self, request: web.Request) -> User:
        """The request's user; an ApiError (401, or 403 for another local user on plain HTTP) if none."""
        if not request.secure and not peers.same_user(request.transport):
            # Exec runs commands as root on this machine: another local user must not use the API.
            raise errors.ApiError(403, "Forbidden", "the sandbox serves only the user that runs it")
        header = request.headers.get("Authorization")
        if header is not None:
            user = self.tokens.authenticate(header)
        else:
            user = None if request.secure else ADMIN
        if user is None:
            raise unauthorized()
        return user

    def impersonate(self, user: User, headers: CIMultiDictProxy[str]) -> User:
        """The user `headers` ask to act as, once `user` may impersonate each part; `user` without any."""
        name = headers.get("Impersonate-User", "")
        groups = headers.getall("Impersonate-Group", [])
        uid = headers.get("Impersonate-Uid", "")
        extras = [(key[len(EXTRA):].lower(), value) for key, value in headers.items()
                  if key.lower().startswith(EXTRA.lower())]
        if not (name or groups or uid or extras):
            return user
        if not name:
            raise errors.ApiError(500, "InternalError", "Internal error occurred: requested impersonation of groups, "
                                                        "a uid or extras without impersonating a user")
        namespace, account = _service_account(name)
        wanted = [requestinfo.Attributes(verb="impersonate", path="", resource_request=True, namespace=namespace,
                                         resource="serviceaccounts", name=account) if account else
                  requestinfo.Attributes(verb="impersonate", path="", resource_request=True, resource="users",
                                         name=name)]
        wanted += [requestinfo.Attributes(verb="impersonate", path="", resource_request=True, resource="groups",
                                          name=group) for group in groups]
        if uid:
            wanted.append(requestinfo.Attributes(verb="impersonate", path="", resource_request=True,
                                                 api_group=AUTHENTICATION, resource="uids", name=uid))
        wanted += [requestinfo.Attributes(verb="impersonate", path="", resource_request=True, api_group=AUTHENTICATION,
                                          resource="userextras", subresource=key, name=value)
                   for key, value in extras]
        if not user.privileged:
            for attrs in wanted:
                decision = rbac.authorize(user, attrs, self.policy)
                if not decision.allowed:
                    message, details = rbac.forbidden(user, attrs, decision.reason)
                    raise errors.ApiError(403, "Forbidden", message, details or None)
        if groups:
            return User(name, tuple(groups))
        if account:
            return service_account_user(namespace, account)
        return User(name, () if name == ANONYMOUS else (AUTHENTICATED,))

    def review(self, user: User, body: dict) -> dict:
        """A SelfSubjectAccessReview answered for `user` (the body as posted, with its `status`)."""
        spec = body.get("spec") or {}
        resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if resource:
            attrs = requestinfo.Attributes(
                verb=resource.get("verb", ""), path="", resource_request=True, api_group=resource.get("group", ""),
                namespace=resource.get("namespace", ""), resource=resource.get("resource", ""),
                subresource=resource.get("subresource", ""), name=resource.get("name", ""))
        elif non_resource:
            attrs = requestinfo.Attributes(verb=non_resource.get("verb", ""), path=non_resource.get("path", ""))
        else:
            raise errors.ApiError(422, "Invalid", 'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
                                                  "spec.resourceAttributes: Invalid value: \"null\": exactly one of "
                                                  "nonResourceAttributes or resourceAttributes must be specified")
        decision = rbac.Decision(True) if user.privileged else rbac.authorize(user, attrs, self.policy)
        status: dict = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        return {**body, "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}, "status": status}
