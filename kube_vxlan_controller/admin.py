"""HTTP surfaces of the running controller.

- The query endpoint (`--admin`, loopback only): `GET /v1/inspect?net=A&net=B` and
  `GET /v1/pods?prefix=P`, JSON, answered by the QueryActor. `kube-vxlan-controller inspect/list` talk
  to it from inside the controller's pod (`kubectl exec … kube-vxlan-controller inspect nets …`). A
  process that does not lead (it has no QueryActor) answers 503 with JSON saying who leads.
- The health endpoint (`--health`, 0.0.0.0:8080 in the Deployment, for the kubelet and Prometheus):
  `/livez` (the process is not giving up; the liveness probe's path), `/healthz` (the same answer, for
  whoever still asks there), `/readyz` (a standby: it has read the Lease; the leader: every pod of the
  first list has been reconciled once), `/metrics`.

Concurrency contract: each server runs in its own thread (stdlib ThreadingHTTPServer, one thread per
request); handlers only ask the QueryActor with a deadline or read thread-safe state.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse

from loguru import logger

Route = Callable[[dict[str, list[str]]], tuple[int, str, bytes]]


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ListenError(Exception):
    """An endpoint cannot listen on its address (in use, not this host's); the message names both."""


class Server:
    """One ThreadingHTTPServer with a route table, started in a daemon thread."""

    def __init__(self, name: str, address: str, routes: dict[str, Route], *, loopback_only: bool = False) -> None:
        host, port = parse_address(address)
        if loopback_only and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{name} endpoint must listen on a loopback address, not {host}")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (stdlib naming)
                url = urlparse(self.path)
                route = routes.get(url.path)
                if route is None:
                    status, kind, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        status, kind, body = route(parse_qs(url.query))
                    except Exception as error:  # answer, log, keep serving
                        logger.exception("{} endpoint: {} failed", outer.name, url.path)
                        status, kind, body = 500, "text/plain", f"{error}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # requests are not news
                pass

        self.name = name
        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise ListenError(f"the {name} endpoint cannot listen on {address}: {error.strerror or error}") from error
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"{name}-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "Server":
        self.thread.start()
        logger.info("{} endpoint on http://{}", self.name, self.address)
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for a serve_forever() that never started otherwise
            self.httpd.shutdown()
        self.httpd.server_close()


def _json(value) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(value, indent=1).encode() + b"\n"


def query_routes(query_actor: Callable[[], object], deadline: float, *,
                 not_leading: Callable[[], dict]) -> dict[str, Route]:
    """`query_actor()` is the QueryActor while this process leads, else None: then the answer is 503
    with `not_leading()`. The query actor answers one question at a time, each within `deadline`: a
    question may wait for the one before it, hence twice the deadline here."""
    wait = 2 * deadline + 2

    def ask(question: Callable[[object], object]) -> tuple[int, str, bytes]:
        actor = query_actor()
        if actor is None:
            status, kind, body = _json(not_leading())
            return 503, kind, body
        return _json(question(actor.proxy()).get(timeout=wait))

    return {
        "/v1/inspect": lambda q: ask(lambda proxy: proxy.inspect(q.get("net", []))),
        "/v1/pods": lambda q: ask(lambda proxy: proxy.list_pods(q.get("prefix", [""])[0])),
    }


def health_routes(*, alive: Callable[[], bool], ready: Callable[[], bool], metrics) -> dict[str, Route]:
    def check(ok: bool) -> tuple[int, str, bytes]:
        return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"not yet\n")

    return {
        "/livez": lambda q: check(alive()),
        "/healthz": lambda q: check(alive()),
        "/readyz": lambda q: check(ready()),
        "/metrics": lambda q: (200, "text/plain; version=0.0.4; charset=utf-8", metrics.exposition()),
    }
