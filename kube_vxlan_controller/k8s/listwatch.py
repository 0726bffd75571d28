"""One list+watch loop, the reflector's contract, shared by the pod stream and the ConfigMap stream.

    list ──▶ on_list(items, rv) ──▶ watch from rv ──▶ on_change(type, obj) … ──▶ watch ends
      ▲                                 ▲                                              │
      │ 410 Gone (relist)               └──── re-watch from the last rv seen ◀─────────┘
      └──── list failed: backoff, relist        watch failed: backoff, re-watch from the last rv

- Items reach the callbacks as the API server wrote them (parsed JSON: dicts), never as client models:
  the consumer turns them into its own values in one step.
- Watches carry `timeoutSeconds` (the server ends them normally) and bookmarks; a bookmark only moves
  the resourceVersion. Every event moves it too, so a re-watch after a dropped connection misses
  nothing: it resumes exactly after the last event delivered.
- 410 Gone (an HTTP 410 or an ERROR event with code 410) means the version left the server's history:
  relist at once, and the consumer gets a fresh `on_list` with the complete state. A watch that expires
  again before delivering anything waits for the backoff first, so a server that keeps expiring us is
  not hammered; so does a watch that ends normally within a second without a single event.
- Any other failure: classified (`errors.classify`), logged with the delay, then retried after
  `Backoff.next()`; the backoff counts health from the moment a list or watch answered. A failure
  that has `errors.advice` (a 401, a server that does not answer) is logged once with what to check;
  while it repeats, quietly (DEBUG), until a list or watch answers again.

Concurrency contract: `run()` blocks the calling thread (one per stream) until the stop event is set
or `stop()` is called; it is the only user of its state. `stop()` may be called from any thread: it
sets the stop event (ending a backoff wait at once) and shuts the socket of the current watch down,
which ends the blocked read at once (urllib3 then raises `ProtocolError`, which is expected and
swallowed). A list in flight is not interrupted; it ends within its request timeout. The callbacks run
on the `run()` thread and should only hand the value on (an actor `tell`); an exception from a callback
is the consumer's and ends `run()` with that exception.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Callable, Iterator

from kubernetes.client.exceptions import ApiException
from loguru import logger

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.errors import ApiUnavailable, advice, classify

#: (connect, read) seconds for a list call.
LIST_TIMEOUT = (10.0, 60.0)
#: seconds to connect to a watch; its read timeout is the watch's own timeout plus READ_MARGIN.
CONNECT_TIMEOUT = 10.0
READ_MARGIN = 30.0
#: a watch that ends normally sooner than this without events counts as a failure (client-go does so).
SHORT_WATCH = 1.0

CHANGE_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})

ListCallback = Callable[[list[dict], str], None]
ChangeCallback = Callable[[str, dict], None]


class _Expired(Exception):
    """The watched resourceVersion is gone from the server's history (410)."""


class ListWatch:
    """Lists a collection, then watches it from the list's resourceVersion, for ever.

    `list_call` is a client method with its selectors bound, e.g.
    `functools.partial(core.list_namespaced_pod, "default", label_selector="app=x")`; it is called
    once per list and once per watch, always with `_preload_content=False` (the body is parsed here).
    `observer`, when given, hears `"listed"`, `"expired"` and `"error"` (for metrics).
    """

    def __init__(
        self,
        *,
        what: str,
        list_call: Callable[..., Any],
        on_list: ListCallback,
        on_change: ChangeCallback,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.what = what
        self._list_call = list_call
        self._on_list = on_list
        self._on_change = on_change
        self._backoff = backoff or Backoff()
        self._watch_timeout = int(watch_timeout)
        self._observer = observer
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._stopping = False
        self._response: Any = None
        #: the resourceVersion to watch from; None: list first.
        self._rv: str | None = None
        #: watches in a row that expired before delivering anything.
        self._quick_expiries = 0
        #: the advice logged for the failure that keeps repeating since the last answer, if any
        self._advised: str | None = None

    @property
    def resource_version(self) -> str | None:
        """The last resourceVersion seen (None before the first list, and after a 410)."""
        return self._rv

    def run(self, stop: threading.Event | None = None, iterations: int | None = None) -> None:
        """List and watch until `stop` is set or `stop()` is called.

        `iterations` (a seam for tests) ends the loop after that many API calls, a list or a watch,
        whether it succeeded or failed.
        """
        with self._lock:
            if stop is not None:
                self._stop_event = stop
            if self._stopping:
                self._stop_event.set()
        calls = 0
        while not self._stopped() and (iterations is None or calls < iterations):
            calls += 1
            self._attempt()

    def _attempt(self) -> None:
        """One list, or one watch until it ends; consumer exceptions pass through."""
        listing = self._rv is None
        verb = "Listing" if listing else "Watching"
        started = time.monotonic()
        delivered = 0
        attempt = self._list() if listing else self._watch()
        try:
            while True:
                try:
                    kind, value = next(attempt)
                except StopIteration:
                    break
                except _Expired as exc:
                    self._expired(exc, quick=delivered == 0)
                    return
                except Exception as exc:  # noqa: BLE001 - every client failure is sorted by classify
                    if not self._stopped():
                        self._failed(exc, verb)
                    return
                delivered += 1
                self._deliver(kind, value)
        finally:
            attempt.close()
        if listing or self._stopped():
            return
        self._quick_expiries = 0
        if delivered == 0 and time.monotonic() - started < SHORT_WATCH:
            self._failed(ApiUnavailable("the watch ended at once without any event"), verb)

    def stop(self) -> None:
        """End `run()` soon, and the current watch at once; callable from any thread."""
        with self._lock:
            self._stopping = True
            self._stop_event.set()
            response = self._response
        if response is not None:
            _shutdown(response)

    # -- one attempt: a generator of ("LISTED", (items, rv)) or (change type, object) -------------

    def _list(self) -> Iterator[tuple[str, Any]]:
        response = self._list_call(_preload_content=False, _request_timeout=LIST_TIMEOUT)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        rv = (body.get("metadata") or {}).get("resourceVersion") or ""
        self._answered()
        self._notify("listed")
        yield "LISTED", ([item for item in body.get("items") or () if isinstance(item, dict)], rv)
        self._rv = rv

    def _watch(self) -> Iterator[tuple[str, Any]]:
        logger.info("Watching {} from version: {}", self.what, self._rv)
        try:
            response = self._list_call(
                watch=True,
                resource_version=self._rv,
                timeout_seconds=self._watch_timeout,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, self._watch_timeout + READ_MARGIN),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise _Expired(str(exc.reason)) from exc
            raise
        with self._lock:
            self._response = response
            stopping = self._stopped()
        try:
            if stopping:
                return
            self._answered()
            for line in _lines(response):
                change = self._parse(line)
                if change is not None:
                    yield change
                if self._stopped():
                    return
        finally:
            with self._lock:
                self._response = None
            response.close()
            response.release_conn()

    def _parse(self, line: bytes) -> tuple[str, Any] | None:
        event = json.loads(line)
        kind = event.get("type")
        raw = event.get("object") or {}
        if kind == "ERROR":
            code = raw.get("code")
            message = f"{raw.get('reason', '')}: {raw.get('message', '')}"
            if code == 410:
                raise _Expired(message)
            raise ApiException(status=code, reason=message)
        rv = (raw.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self._rv = rv
            return None
        if kind not in CHANGE_TYPES:
            logger.warning("Watching {}: ignored an event of unknown type {!r}", self.what, kind)
            return None
        if rv:
            self._rv = rv
        if not isinstance(raw, dict) or not raw:
            logger.error("Watching {}: skipped a {} event without an object", self.what, kind)
            return None
        return kind, raw

    # -- outcomes ------------------------------------------------------------------------------------

    def _deliver(self, kind: str, value: Any) -> None:
        if kind == "LISTED":
            self._on_list(*value)
        else:
            self._on_change(kind, value)

    def _expired(self, exc: _Expired, *, quick: bool) -> None:
        self._rv = None
        self._notify("expired")
        self._quick_expiries = self._quick_expiries + 1 if quick else 0
        if self._quick_expiries < 2:
            logger.info("Watching {}: version expired ({}); relisting", self.what, exc)
            return
        delay = self._backoff.next()
        logger.warning("Watching {}: expired again at once ({}); relisting in {:.2f}s", self.what, exc, delay)
        self._stop_event.wait(delay)

    def _failed(self, exc: BaseException, verb: str) -> None:
        error = classify(exc)
        delay = self._backoff.next()
        self._notify("error")
        hint = advice(error)
        if hint is not None and hint == self._advised:
            logger.debug("{} {} failed again ({}); retrying in {:.2f}s", verb, self.what, error, delay)
        elif hint is not None:
            logger.warning("{} {} failed ({}): {}; retrying with backoff, quietly until it answers", verb,
                           self.what, error, hint)
        else:
            logger.warning("{} {} failed ({}: {}); retrying in {:.2f}s", verb, self.what, type(error).__name__,
                           error, delay)
        self._advised = hint
        self._stop_event.wait(delay)

    def _answered(self) -> None:
        """A list or watch answered: the backoff counts health from now; trouble is news again."""
        self._backoff.healthy_since()
        self._advised = None

    def _notify(self, outcome: str) -> None:
        if self._observer is not None:
            try:
                self._observer(outcome)
            except Exception:  # noqa: BLE001 - metrics must never break the stream
                logger.exception("list-watch observer failed")

    def _stopped(self) -> bool:
        return self._stopping or self._stop_event.is_set()


def _lines(response: Any) -> Iterator[bytes]:
    """The non-empty lines of a chunked watch response, as they arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _shutdown(response: Any) -> None:
    """Unblock a thread reading `response` by shutting its socket down (closing alone may not)."""
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
