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

Concurrency contract: called on the sandbox's event loop by the API middleware; reads the store and the
tokens synchronously, so a request is judged against one consistent set of roles and bindings.
"""

from __future__ import annotations

from aiohttp import web

from . import errors, peers, rbac, requestinfo
from .authn import ADMIN, Tokens, User
from .resources import BY_PATH
from .store import Store

REVIEWS_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
CLUSTER_ROLES = BY_PATH[("rbac.authorization.k8s.io", "v1", "clusterroles")]
CLUSTER_ROLE_BINDINGS = BY_PATH[("rbac.authorization.k8s.io", "v1", "clusterrolebindings")]
ROLES = BY_PATH[("rbac.authorization.k8s.io", "v1", "roles")]
ROLE_BINDINGS = BY_PATH[("rbac.authorization.k8s.io", "v1", "rolebindings")]


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
        """The request's user if it may go on; an ApiError (401, 403) otherwise."""
        user = self.authenticate(request)
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
