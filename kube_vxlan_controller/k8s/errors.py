"""The project's own errors for everything that goes wrong talking to the API server, sorted once.

Retry policy is not business logic (client-go `handleErr`, controller-runtime `TerminalError`): every
failure from the client, urllib3 or websocket-client is turned into one of these by `classify`, here and
nowhere else, and callers decide by type alone:

- `PodGone`: terminal. The pod or the container is not there (any more): 404, or 400 "container … not
  found / not valid". Retrying cannot help; wait for the watch to say what happened.
- `ExecTimeout`: the command did not finish before its deadline. The pod may be hung; retry later.
- `ApiUnavailable`: retryable. Connection refused/reset/timed out, 5xx, 429, 408, a broken stream.
- `Forbidden`: 403, RBAC denied the request; the message names the user, verb and resource, as the
  API server words it. Not transient by nature, but an operator may fix the role meanwhile: callers
  say so once and keep retrying with backoff (level-triggered, no restart needed).
- `Conflict`: 409, someone else wrote first: the object changed since it was read (a stale
  resourceVersion) or already exists. Optimistic concurrency: read again and decide again (the
  leader election relies on it).
- `LeaseEnding`: an exec not started because it might outlive the leader's Lease (see execs.py).
- `K8sError` itself: anything else (401, 422, …), retried with backoff and logged likewise.

`advice` says what to check for the failures that repeat until someone fixes them (401, no answer), so
that retry loops can say it once and then retry quietly.

Every error keeps the client's exception as `__cause__` and its HTTP status (when known) as `status`.
Pure functions and immutable exceptions: safe from any thread.
"""

from __future__ import annotations

import json
import re
import socket

import urllib3.exceptions
import websocket
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException


class K8sError(Exception):
    """Talking to the Kubernetes API failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PodGone(K8sError):
    """Terminal: the pod or its container does not exist (any more)."""


class ExecTimeout(K8sError):
    """The exec did not finish before its deadline (the command may still run in the pod)."""


class Cancelled(K8sError):
    """Not started: the process is stopping (an exec that waited for a slot does not run then)."""


class Forbidden(K8sError):
    """RBAC denied the request (403); the message says which permission is missing."""


class Conflict(K8sError):
    """409: the object changed since it was read, or it exists already; read it again."""


class LeaseEnding(K8sError):
    """Not started: the exec could outlive this leader's Lease, so another leader could be exec'ing then."""


class ApiUnavailable(K8sError):
    """Retryable: the API server could not be reached or asked us to come back later."""


_CONTAINER_MISSING = re.compile(r"\bcontainer\b.*\bnot (found|valid)\b", re.IGNORECASE | re.DOTALL)
_RETRYABLE_STATUS = frozenset({408, 429})
_CONNECTION_WORDS = ("connection", "timed out", "timeout", "refused", "reset", "broken pipe", "eof")


def classify(exc: BaseException) -> K8sError:
    """The project's error for `exc`, with `exc` as its cause. A `K8sError` is returned unchanged."""
    if isinstance(exc, K8sError):
        return exc
    error = _classify(exc)
    error.__cause__ = exc
    return error


def _classify(exc: BaseException) -> K8sError:
    if isinstance(exc, ApiException):
        return _from_api_exception(exc)
    if isinstance(exc, ConfigException):
        return K8sError(f"bad client configuration: {exc}")
    if isinstance(exc, websocket.WebSocketBadStatusException):
        # an exec's websocket upgrade refused (websockets.py): "Handshake status 404 Not Found -+-+- {headers}
        # -+-+- {body}", the body the API server's Status
        return _from_status(exc.status_code, str(exc), str(exc))
    if isinstance(
        exc,
        (
            urllib3.exceptions.HTTPError,  # MaxRetryError, ProtocolError, ReadTimeoutError, …
            websocket.WebSocketException,
            ConnectionError,
            socket.timeout,
            TimeoutError,
            OSError,
        ),
    ):
        return ApiUnavailable(f"API server unreachable: {one_line(exc)}")
    return K8sError(f"unexpected client error: {type(exc).__name__}: {one_line(exc)}")


def advice(error: K8sError) -> str | None:
    """What to check when `error` will repeat until someone fixes something outside the controller (its
    credentials, the server's address): for a 401 and for a server that does not answer; else None."""
    if error.status == 401:
        return ("the API server does not accept the credentials (401): check the token or client certificate "
                "of the kubeconfig's user, or in a pod its service account token")
    if isinstance(error, ApiUnavailable) and error.status is None:
        return ("the API server does not answer: check that it runs and its address (the kubeconfig's server, "
                "or KUBERNETES_SERVICE_HOST/PORT in a pod)")
    return None


def _from_api_exception(exc: ApiException) -> K8sError:
    reason = str(exc.reason or "")
    if not exc.status:
        return _status_zero(exc, reason)
    return _from_status(exc.status, reason, str(exc.body or ""))


def _from_status(status: int, reason: str, body: str) -> K8sError:
    message = _status_message(body) or reason or "no reason given"
    text = f"{status} {message}"
    if status == 404:
        return PodGone(text, status=status)
    if status == 400 and _CONTAINER_MISSING.search(message):
        return PodGone(text, status=status)
    if status == 403:
        return Forbidden(text, status=status)
    if status == 409:
        return Conflict(text, status=status)
    if status >= 500 or status in _RETRYABLE_STATUS:
        return ApiUnavailable(text, status=status)
    return K8sError(text, status=status)


def _status_zero(exc: ApiException, reason: str) -> K8sError:
    # The original exception is the context of the ApiException raised in the client's `except` block.
    original = exc.__context__
    if original is not None and not isinstance(original, ApiException):
        inner = _classify(original)
        if isinstance(inner, ApiUnavailable):
            return ApiUnavailable(f"API server unreachable: {one_line(original)}")
    if any(word in reason.lower() for word in _CONNECTION_WORDS):
        return ApiUnavailable(f"API server unreachable: {one_line(reason)}")
    return K8sError(f"client error: {one_line(reason) or type(exc).__name__}")


def _status_message(body: str) -> str:
    """The `message` of the Kubernetes Status in `body` (a JSON Status, or text that contains one)."""
    decoder = json.JSONDecoder()
    start = body.find("{")
    while start != -1:
        try:
            status, _ = decoder.raw_decode(body, start)
        except ValueError:
            status = None
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return status["message"]
        start = body.find("{", start + 1)
    return ""


def one_line(value: object) -> str:
    return " ".join(str(value).split())[:500]
