"""A small asynchronous client of the Docker Engine API (v1.41, Docker 20.10+) over the engine's unix
socket, for the docker runtime.

    engine = Engine(socket_path())        # DOCKER_HOST=unix:///PATH, else /var/run/docker.sock
    info = await engine.call("GET", "/containers/ID/json")          # EngineError for a 4xx/5xx
    async with engine.stream("GET", "/containers/ID/logs", {…}) as body:
        async for stream_type, data in frames(body): …
    reader, writer = await engine.hijack("/exec/ID/start", {"Detach": False, "Tty": False})
    get_sync(socket_path(), "/version")   # from a thread with no loop: (status, body)

Why not docker-py: its calls block, and the runtime keeps one long call per running container (`wait`)
and per exec: in threads that would exhaust the loop's default executor (a few threads on these
machines) and stall every other pod. Here every call is a coroutine on the sandbox's loop; aiohttp (the
sandbox's server library) speaks HTTP over the socket, with no limit on connections.

Hijacked streams. `POST /exec/ID/start` with `Upgrade: tcp` answers `101 UPGRADED`, then the connection
carries the exec's raw streams (no tty): frames of an 8-byte header (stream type: 1 stdout, 2 stderr; 4
bytes big-endian size) and the data, in the order the process wrote it; the client's bytes are the
process's stdin, and half-closing the socket (`writer.write_eof()`) is its EOF. Container logs come in the
same frames, in an ordinary response body.

Concurrency contract: an `Engine` belongs to the loop it was created on; its coroutines never block it
and any number may run at once. `get_sync` blocks its caller for at most `SYNC_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

API = "/v1.41"
DEFAULT_SOCKET = "/var/run/docker.sock"
#: seconds an ordinary call may take (creating a container on a busy machine takes a while)
CALL_TIMEOUT = 60.0
SYNC_TIMEOUT = 5.0


class EngineError(Exception):
    """The engine answered with an error status; `message` is its own text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def socket_path() -> str:
    """The engine's socket, as docker's own clients find it (DOCKER_HOST, else the default). ValueError
    for a DOCKER_HOST that is not a unix socket."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if not host.startswith("unix://"):
        raise ValueError(f"DOCKER_HOST={host}: only a local engine's unix:// socket is supported")
    return host[len("unix://"):]


def _error_text(body: bytes) -> str:
    try:
        return json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=SYNC_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get_sync(path: str, url: str) -> tuple[int, Any]:
    """`GET API+url` without a loop; (status, parsed JSON body or its text). OSError when nothing answers."""
    conn = _UnixConnection(path)
    try:
        conn.request("GET", API + url)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode(errors="replace")


async def frames(reader: Any) -> AsyncIterator[tuple[int, bytes]]:
    """(stream type, data) of each frame of a multiplexed stream (an asyncio or aiohttp StreamReader)."""
    while True:
        try:
            header = await reader.readexactly(8)
            data = await reader.readexactly(int.from_bytes(header[4:8], "big"))
        except asyncio.IncompleteReadError:  # the end (a frame cut short by a connection lost: dropped)
            return
        yield header[0], data


class Engine:
    def __init__(self, path: str) -> None:
        self.path = path
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path, limit=0),
                                              base_url="http://docker")

    async def close(self) -> None:
        await self._session.close()

    async def call(self, method: str, path: str, params: dict | None = None, body: Any = None, *,
                   timeout: float | None = CALL_TIMEOUT) -> Any:
        """One API call; its JSON answer (None when empty). EngineError for an error status; `timeout`
        None waits as long as the engine takes (`wait`)."""
        async with self._session.request(method, API + path, params=params, json=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            data = await response.read()
            if response.status >= 400:
                raise EngineError(response.status, _error_text(data))
            return json.loads(data) if data else None

    @asynccontextmanager
    async def stream(self, method: str, path: str, params: dict | None = None) -> AsyncGenerator[Any, None]:
        """A call whose answer is read as it comes: the body's StreamReader. EngineError for an error."""
        async with self._session.request(method, API + path, params=params,
                                         timeout=aiohttp.ClientTimeout(total=None)) as response:
            if response.status >= 400:
                raise EngineError(response.status, _error_text(await response.read()))
            yield response.content

    async def hijack(self, path: str, body: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """`POST API+path` upgraded to a raw stream (see the module docstring); EngineError if refused."""
        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            payload = json.dumps(body).encode()
            writer.write(f"POST {API}{path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                         f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                         + payload)
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CALL_TIMEOUT)).decode("latin-1")
            status = int(head.split(" ", 2)[1])
            if status != 101:
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.lower().startswith("content-length:")), 0)
                raise EngineError(status, _error_text(await reader.readexactly(length)))
        except BaseException:
            writer.close()
            raise
        return reader, writer
