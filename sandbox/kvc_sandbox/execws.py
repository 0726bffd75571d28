"""Pod exec over websocket, as a Kubernetes API server (proxying to a kubelet and a container runtime)
speaks it; the same for every runtime.

    ws = await serve_exec(request, container=…, argv=[…], stdin=…, stdout=…, stderr=…,
                          latency=…, is_hung=…, target="ns/name:container")

The caller (the API server's exec route) has already checked the pod and container and parsed the query
(`command` repeated, `stdin`, `stdout`, `stderr`); `serve_exec` does the websocket upgrade and everything
after it, and returns the closed `WebSocketResponse` for the handler to return. `container` is the
runtime's `ContainerExec` for the target container (netnsruntime.py: nsenter into its namespaces;
dockerruntime.py: Docker's exec API): it runs the command, streaming through the `ExecSession`, and
returns its exit code, or raises `ExecError` when the command cannot start.

Protocol. Subprotocols `v5.channel.k8s.io`, `v4.channel.k8s.io`, `channel.k8s.io` (the client's order
decides; the chosen one is echoed). Every frame starts with a channel byte: 0 stdin (TEXT or BINARY frames:
the official client sends TEXT), 1 stdout, 2 stderr, 3 status, 4 resize (ignored). v5 adds `255, channel`:
the client closed that channel; `255, 0` is stdin EOF (v4 has no stdin EOF at all). At the end, channel 3
carries the API server's Status JSON (v4/v5; v1 carries a plain error text, nothing on success):
- exit 0: `{"metadata":{},"status":"Success"}`;
- exit N: Failure, reason NonZeroExitCode, `details.causes[0]` = `{"reason":"ExitCode","message":"N"}`;
  a process killed by signal S exits 128+S, as containerd reports it;
- a command that cannot start (`ExecError`: a binary that does not exist or cannot run, a container whose
  main process ended meanwhile): what kubelet + containerd send, an InternalError (code 500) whose message
  ends, for a missing binary, in `OCI runtime exec failed: exec failed: unable to start container process:
  exec: "nosuch": executable file not found in $PATH: unknown`, and whose `details.causes[0]` holds only a
  message: the official client's `returncode` then raises ValueError (`int()` of that text);
then the server closes the websocket.

Faults. `latency` seconds pass before the command runs; then, while `is_hung()` (polled every 50 ms) is
true, the exec neither runs nor answers — the handshake is done, the client waits. A client that goes away
while waiting is let go quietly; nothing runs.

Lifetime. Output is streamed as it comes. When the client goes away while the command runs, the command
keeps running, as under a real kubelet (its stdin gets EOF, its output is drained and dropped): wrap
long-running commands in `timeout N`. It ends at the latest with its container. When the server shuts
down (the handler is cancelled), the runtime's `run` is cancelled (the netns runtime kills the command).

Concurrency contract: `serve_exec` runs on the API server's event loop and never blocks it (`is_hung` must
be quick, a `ContainerExec` never blocks). Any number of execs run at once, each in its own handler task.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
from collections.abc import Callable
from typing import Protocol

from aiohttp import WSMsgType, web
from loguru import logger

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V1 = "channel.k8s.io"
PROTOCOLS = (V5, V4, V1)

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
HANG_POLL = 0.05
#: how runc's message starts when an exec's process cannot start (`unable to start container process:
#: exec: "prog": …: unknown`, `cannot exec in a stopped container: unknown`)
OCI_EXEC_FAILED = "OCI runtime exec failed: exec failed: "

_EOF = object()


def status_success() -> dict:
    return {"metadata": {}, "status": "Success"}


def status_exit_code(argv: list[str], code: int) -> dict:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(argv)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def status_internal_error(err: str) -> dict:
    """apierrors.NewInternalError(err), as the kubelet wraps an exec that could not start."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {err}",
        "reason": "InternalError",
        "details": {"causes": [{"message": err}]},
        "code": 500,
    }


def exec_start_error(exec_id: str, oci_error: str) -> str:
    """The kubelet's text for an exec whose process the OCI runtime could not start (`oci_error`: runc's
    message, `OCI runtime exec failed: …: unknown`)."""
    return (f'error executing command in container: failed to exec in container: failed to start exec '
            f'"{exec_id}": {oci_error}')


def start_error(problem: str) -> str:
    """The kubelet's text for an exec whose process runc could not start, `problem` being runc's reason
    (`exec: "prog": executable file not found in $PATH`)."""
    return exec_start_error(secrets.token_hex(32), f"{OCI_EXEC_FAILED}unable to start container process: {problem}: "
                                                   f"unknown")


class ExecError(Exception):
    """The command could not start; the message is the kubelet's text of the InternalError."""


class Unrunnable:
    """A `ContainerExec` whose commands cannot start: what runc answers when the image lacks the program
    (the `break_commands` fault)."""

    async def run(self, session: "ExecSession", argv: list[str], *, stdin: bool, stdout: bool, stderr: bool) -> int:
        prog = argv[0] if argv else ""
        raise ExecError(start_error(f'exec: "{prog}": executable file not found in $PATH'))


class ExecSession:
    """One exec: the websocket, the reader of client frames, and the writers of output frames."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str, target: str,
                 on_stdin: Callable[[bytes], None] | None = None, is_hung: Callable[[], bool] = lambda: False) -> None:
        self.ws = ws
        self._on_stdin = on_stdin
        self._is_hung = is_hung
        self.protocol = protocol
        #: "namespace/name:container", for log lines
        self.target = target
        self._stdin: asyncio.Queue[bytes | object] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self.reader = asyncio.create_task(self._read(), name=f"exec-reader {target}")

    @property
    def gone(self) -> bool:
        """The client closed or lost the connection."""
        return self.reader.done() or self.ws.closed

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.TEXT:
                    data = msg.data.encode("utf-8")  # the channel byte 0..4 is one UTF-8 byte too
                else:
                    continue
                if not data:
                    continue
                if data[0] == STDIN:
                    if len(data) > 1:
                        self._stdin.put_nowait(data[1:])
                        if self._on_stdin is not None:
                            self._on_stdin(data[1:])
                elif data[0] == CLOSE and self.protocol == V5 and data[1:2] == bytes([STDIN]):
                    self._stdin.put_nowait(_EOF)
                # RESIZE (no tty here) and anything else: ignored, as the API server does.
        finally:
            self._stdin.put_nowait(_EOF)  # a client that went away closes stdin, as under a kubelet

    @property
    def how_gone(self) -> str:
        """How the stream ended, for log lines: the close code (1000: the client closed it; 1006: the
        connection was lost, whichever side lost it) and the error that ended it, if any."""
        error = self.ws.exception()
        return f"close code {self.ws.close_code}{f', {type(error).__name__}: {error}' if error else ''}"

    async def read_stdin(self) -> bytes | None:
        """The next chunk the client wrote to stdin; None at its EOF (v5 close, or the client gone). While
        the pod hangs, nothing is delivered; a client that leaves meanwhile leaves nothing behind."""
        data = await self._stdin.get()
        while self._is_hung():
            if await self.wait_gone(HANG_POLL):
                return None
        return None if data is _EOF else data

    async def sever(self) -> None:
        """Close the stream from the server's side, as a restarting API server or kubelet does."""
        logger.info("exec {}: stream severed", self.target)
        await self.ws.close()

    async def send(self, channel: int, data: bytes) -> None:
        """Send output on `channel` (STDOUT, STDERR); dropped once the client is gone."""
        if self.gone:
            return
        try:
            async with self._send_lock:
                await self.ws.send_bytes(bytes([channel]) + data)
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: aiohttp's "closing transport"
            logger.debug("exec {}: client gone while sending: {}", self.target, exc)

    async def finish(self, status: dict | None, error_text: str = "") -> None:
        """Send the exit status (in the negotiated protocol's form) and close the websocket."""
        if self.protocol in (V4, V5):
            await self.send(STATUS, json.dumps(status, separators=(",", ":")).encode())
        elif error_text:
            await self.send(STATUS, error_text.encode())
        if not self.ws.closed:
            await self.ws.close()
        self.reader.cancel()

    async def wait_gone(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if the client goes away; True if it went away."""
        if seconds > 0:
            await asyncio.wait([self.reader], timeout=seconds)
        return self.gone


class ContainerExec(Protocol):
    """How a runtime runs an exec'd command in one container."""

    async def run(self, session: ExecSession, argv: list[str], *, stdin: bool, stdout: bool,
                  stderr: bool) -> int:
        """Run `argv` to its end in the container, streaming output with `session.send` while the client
        listens and feeding it `session.read_stdin()` (if `stdin`); its exit code (128 + S when killed by
        signal S). ExecError if it cannot start."""


async def serve_exec(
    request: web.Request,
    *,
    container: ContainerExec,
    argv: list[str],
    stdin: bool,
    stdout: bool,
    stderr: bool,
    latency: float = 0.0,
    is_hung: Callable[[], bool] = lambda: False,
    target: str = "",
    on_stdin: Callable[[bytes], None] | None = None,
    live: dict | None = None,
    tag: object = None,
) -> web.WebSocketResponse:
    """Upgrade `request` to the exec websocket and run `argv` in `container`; see the module docstring.
    `target` ("namespace/name:container") only names the exec in log lines; `on_stdin` sees every chunk the
    client writes to stdin (the exec log); `live`: a dict that holds the session (its value `tag`) while it
    runs."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, timeout=5.0, autoping=True)
    await ws.prepare(request)
    s = ExecSession(ws, ws.ws_protocol or V1, target, on_stdin, is_hung)
    if live is not None:
        live[s] = tag
    try:
        if await s.wait_gone(latency):
            return ws
        while is_hung():
            if await s.wait_gone(HANG_POLL):
                logger.debug("exec {}: stream of a hung exec ended ({}): {}", target, s.how_gone, shlex.join(argv))
                return ws
        try:
            code = await container.run(s, argv, stdin=stdin, stdout=stdout, stderr=stderr)
        except ExecError as exc:
            logger.info("exec {}: {}", target, exc)
            await s.finish(status_internal_error(str(exc)), str(exc))
            return ws
        logger.debug("exec {}: exit {}: {}", target, code, shlex.join(argv))
        if code == 0:
            await s.finish(status_success())
        else:
            await s.finish(status_exit_code(argv, code), f"command terminated with exit code {code}")
        return ws
    finally:
        s.reader.cancel()
        if live is not None:
            live.pop(s, None)
