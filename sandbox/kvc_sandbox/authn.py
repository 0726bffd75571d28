"""Who sends a request: users, bearer tokens, and the service accounts they belong to.

- The kubeconfig's user is `sandbox-admin` in group `system:masters`: all-powerful, as a kubeadm
  admin.conf user is (RBAC is never consulted for it). Its credential is a random bearer token in the
  kubeconfig; on the plain-HTTP loopback listener, a request without any credential from the local user
  who runs the sandbox is this user too (see access.py).
- Every ServiceAccount has one token while it exists: minted when the ServiceAccount is stored (also when
  created later, e.g. by `kubectl apply` of a bundle), revoked when it is deleted (a re-created account
  gets a new one, as a deleted account's legacy token stops working on a real cluster). Its user is
  `system:serviceaccount:NS:NAME` in groups `system:serviceaccounts`, `system:serviceaccounts:NS` and
  `system:authenticated`, as kube-apiserver's service-account authenticator says.
- TokenRequest (`POST …/serviceaccounts/NAME/token`, what `kubectl create token NAME` sends): a further
  token of the account's user, valid for the seconds asked (default 1 h, at least 10 min), revoked with
  the account too.
- Like kube-controller-manager's serviceaccounts controller, every namespace gets a ServiceAccount
  `default` soon after it is created (and again if it is deleted while the namespace lives).

Tokens are opaque random strings, not JWTs: clients send them back unread (`load_incluster_config()`
only reads the file), and the sandbox looks them up.

Concurrency contract: a `Tokens` belongs to the sandbox's event loop: it is a store listener, and
`token_for` / `authenticate` are called on that loop (other threads go through `Sandbox.token_for`).
It never writes to the store inside a listener call: the `default` ServiceAccount is created on the
next loop iteration (`call_soon`), like deployments.py's controllers.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass

from . import errors
from .resources import BY_PATH, NAMESPACES
from .store import Event, Store

SERVICEACCOUNTS = BY_PATH[("", "v1", "serviceaccounts")]
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def privileged(self) -> bool:
        """In `system:masters`: allowed everything, RBAC never consulted (kube-apiserver does the same)."""
        return MASTERS in self.groups


ADMIN = User("sandbox-admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED))


def bearer(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer …` header (the scheme in any case: the official client's
    in-cluster config sends `bearer …`), None for any other header."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Tokens:
    """The admin's token and one token per ServiceAccount; see the module docstring."""

    def __init__(self, store: Store):
        self._store = store
        self.admin_token = secrets.token_urlsafe(32)
        self._users: dict[str, User] = {}
        self._by_account: dict[tuple[str, str], str] = {}
        #: tokens from TokenRequests: by account, and when each expires (time.time())
        self._requested: dict[tuple[str, str], set[str]] = {}
        self._expiry: dict[str, float] = {}
        self._pending: set[str] = set()
        for account in store.list(SERVICEACCOUNTS):
            self._mint(account["metadata"]["namespace"], account["metadata"]["name"])
        store.listeners.append(self._on_event)
        for namespace in store.list(NAMESPACES):
            self._want_default(namespace["metadata"]["name"])

    def token_for(self, namespace: str, serviceaccount: str) -> str:
        """The token of an existing ServiceAccount; KeyError when there is no such account (yet)."""
        return self._by_account[(namespace, serviceaccount)]

    def request_token(self, namespace: str, serviceaccount: str, seconds: int) -> tuple[str, float]:
        """A new token of an existing ServiceAccount, valid for `seconds`: (token, when it expires)."""
        token, expires = secrets.token_urlsafe(32), time.time() + seconds
        self._users[token] = service_account_user(namespace, serviceaccount)
        self._expiry[token] = expires
        self._requested.setdefault((namespace, serviceaccount), set()).add(token)
        return token, expires

    def authenticate(self, authorization: str) -> User | None:
        """The user an `Authorization` header's bearer token belongs to, None for anything else."""
        token = bearer(authorization)
        if token is None:
            return None
        if hmac.compare_digest(token, self.admin_token):
            return ADMIN
        if self._expiry.get(token, float("inf")) <= time.time():
            return None
        return self._users.get(token)

    # the store's changes -------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        m = event.obj["metadata"]
        if event.resource == SERVICEACCOUNTS:
            if event.type == "ADDED":
                self._mint(m["namespace"], m["name"])
            elif event.type == "DELETED":
                self._users.pop(self._by_account.pop((m["namespace"], m["name"]), ""), None)
                for token in self._requested.pop((m["namespace"], m["name"]), ()):
                    self._users.pop(token, None)
                    self._expiry.pop(token, None)
                if m["name"] == "default":
                    self._want_default(m["namespace"])
        elif event.resource == NAMESPACES and event.type == "ADDED":
            self._want_default(m["name"])

    def _mint(self, namespace: str, name: str) -> None:
        token = secrets.token_urlsafe(32)
        self._by_account[(namespace, name)] = token
        self._users[token] = service_account_user(namespace, name)

    def _want_default(self, namespace: str) -> None:
        if namespace not in self._pending:
            self._pending.add(namespace)
            asyncio.get_running_loop().call_soon(self._create_default, namespace)

    def _create_default(self, namespace: str) -> None:
        self._pending.discard(namespace)
        ns = self._store.get(NAMESPACES, "", namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        try:
            self._store.create(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": namespace}})
        except errors.ApiError:  # it exists already
            pass
