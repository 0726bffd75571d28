"""Pod exec over websocket, as a Kubernetes API server (proxying to a kubelet and containerd) speaks it.

    ws = await serve_exec(request, container=…, argv=[…], stdin=…, stdout=…, stderr=…,
                          latency=…, is_hung=…, processes=…, target="ns/name:container")

The caller (the API server's exec route) has already checked the pod and container and parsed the query
(`command` repeated, `stdin`, `stdout`, `stderr`); `serve_exec` does the websocket upgrade and everything
after it, and returns the closed `WebSocketResponse` for the handler to return.

Protocol. Subprotocols `v5.channel.k8s.io`, `v4.channel.k8s.io`, `channel.k8s.io` (the client's order
decides; the chosen one is echoed). Every frame starts with a channel byte: 0 stdin (TEXT or BINARY frames:
the official client sends TEXT), 1 stdout, 2 stderr, 3 status, 4 resize (ignored). v5 adds `255, channel`:
the client closed that channel; `255, 0` is stdin EOF (v4 has no stdin EOF at all). At the end, channel 3
carries the API server's Status JSON (v4/v5; v1 carries a plain error text, nothing on success):
- exit 0: `{"metadata":{},"status":"Success"}`;
- exit N: Failure, reason NonZeroExitCode, `details.causes[0]` = `{"reason":"ExitCode","message":"N"}`;
  a process killed by signal S exits 128+S, as containerd reports it;
- a binary that does not exist or cannot run: what kubelet + containerd send, an InternalError (code 500)
  whose message ends in `OCI runtime exec failed: exec failed: unable to start container process: exec:
  "nosuch": executable file not found in $PATH: unknown`, and whose `details.causes[0]` holds only a
  message: the official client's `returncode` then raises ValueError (`int()` of that text); an exec
  into a container whose main process ended meanwhile is an InternalError too;
then the server closes the websocket.

Safety. The argv runs as root, inside the target container: `nsenter` joins the PID, mount and network
namespaces of the container's main process (containers.py: `ContainerProcess.enter` opens them and
checks they are that process's, never the sandbox's own PID namespace) and forks the command there. So the
command sees only the container's processes (`ps`, /proc), `kill -TERM 1` signals the container's main
process (the kubelet emulation sees it exit: containers terminate because their process ended, no argv is
interpreted here), /run and /tmp are the container's own tmpfs, and nothing it runs can see or signal a
process of the host. Everything else of the filesystem (the binaries) is this machine's. An exec into a
container whose main process is gone meanwhile is an InternalError ("container is not running").

Faults. `latency` seconds pass before the command runs; then, while `is_hung()` (polled every 50 ms) is
true, the exec neither runs nor answers — the handshake is done, the client waits. A client that goes away
while waiting is let go quietly; nothing runs.

Lifetime. Output is streamed as it comes. When the client goes away while the command runs, the command
keeps running, as under a real kubelet (its stdin gets EOF, its output is drained and dropped): wrap
long-running commands in `timeout N`. The process (`nsenter`, which waits for the command) is tracked in
`processes` (a `ProcessRegistry`); when the server shuts down (the handler is cancelled), the command is
killed, and `nsenter` with it.
The command itself lives in the container's PID namespace: it ends at the latest with the container's main
process, which the pod's removal kills (and with it every process of that namespace).

Concurrency contract: `serve_exec` runs on the API server's event loop and never blocks it: the process is
an asyncio subprocess, `is_hung` must be quick. Any number of execs run at once, each in its own handler
task.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
from collections.abc import Callable

from aiohttp import WSMsgType, web
from loguru import logger

from .containers import ContainerProcess, NotRunning, exec_argv, kill_exec
from .node import ProcessRegistry

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V1 = "channel.k8s.io"
PROTOCOLS = (V5, V4, V1)

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
HANG_POLL = 0.05
#: the environment of every exec'd command: what a container image's config typically gives.
EXEC_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}

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


def _start_error(argv: list[str]) -> str | None:
    """runc's reason why `argv[0]` cannot be exec'd (looked up on this machine's filesystem), or None."""
    prog = argv[0] if argv else ""
    if not prog:
        problem = 'exec: "": executable file not found in $PATH'
    elif "/" in prog:
        if not os.path.exists(prog):
            problem = f'exec: "{prog}": stat {prog}: no such file or directory'
        elif os.path.isdir(prog) or not os.access(prog, os.X_OK):
            problem = f'exec: "{prog}": permission denied'
        else:
            return None
    else:
        for d in EXEC_ENV["PATH"].split(":"):
            p = os.path.join(d, prog)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return None
        problem = f'exec: "{prog}": executable file not found in $PATH'
    exec_id = secrets.token_hex(32)
    return (f'error executing command in container: failed to exec in container: failed to start exec '
            f'"{exec_id}": OCI runtime exec failed: exec failed: unable to start container process: '
            f'{problem}: unknown')


class _Session:
    """One exec: the websocket, the reader of client frames, and the writers of output frames."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str, target: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.target = target
        self.stdin: asyncio.Queue[bytes | object] = asyncio.Queue()
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
                        self.stdin.put_nowait(data[1:])
                elif data[0] == CLOSE and self.protocol == V5 and data[1:2] == bytes([STDIN]):
                    self.stdin.put_nowait(_EOF)
                # RESIZE (no tty here) and anything else: ignored, as the API server does.
        finally:
            self.stdin.put_nowait(_EOF)  # a client that went away closes stdin, as under a kubelet

    async def send(self, channel: int, data: bytes) -> None:
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


async def serve_exec(
    request: web.Request,
    *,
    container: ContainerProcess,
    argv: list[str],
    stdin: bool,
    stdout: bool,
    stderr: bool,
    latency: float = 0.0,
    is_hung: Callable[[], bool] = lambda: False,
    processes: ProcessRegistry | None = None,
    target: str = "",
) -> web.WebSocketResponse:
    """Upgrade `request` to the exec websocket and run `argv` in `container`; see the module docstring.
    `target` ("namespace/name:container") only names the exec in log lines."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, timeout=5.0, autoping=True)
    await ws.prepare(request)
    s = _Session(ws, ws.ws_protocol or V1, target)
    try:
        if await s.wait_gone(latency):
            return ws
        while is_hung():
            if await s.wait_gone(HANG_POLL):
                logger.debug("exec {}: client left a hung exec: {}", target, shlex.join(argv))
                return ws
        error = _start_error(argv)
        if error is not None:
            logger.info("exec {}: {}", target, error)
            await s.finish(status_internal_error(error), error)
            return ws
        try:
            namespaces = container.enter()
        except NotRunning as exc:
            error = f"error executing command in container: {exc}"
            await s.finish(status_internal_error(error), error)
            return ws
        try:
            code = await _run(s, container.netns, namespaces, argv, stdin=stdin, stdout=stdout, stderr=stderr,
                              processes=processes)
        except OSError as exc:  # could not even start `nsenter` (out of fds, processes…)
            logger.error("exec {}: cannot start {}: {}", target, shlex.join(argv), exc)
            error = f"error executing command in container: {exc}"
            await s.finish(status_internal_error(error), error)
            return ws
        logger.debug("exec {}: exit {}: {}", target, code, shlex.join(argv))
        if code == 0:
            await s.finish(status_success())
        else:
            await s.finish(status_exit_code(argv, code), f"command terminated with exit code {code}")
        return ws
    finally:
        s.reader.cancel()


async def _run(s: _Session, netns: str, namespaces: list[int], argv: list[str], *, stdin: bool, stdout: bool,
               stderr: bool, processes: ProcessRegistry | None) -> int:
    """Run the command to its end in the container whose `namespaces` (fds, closed here) are given,
    streaming while the client listens; returns containerd's exit code."""
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *exec_argv(namespaces, argv), stdin=pipe if stdin else null, stdout=pipe if stdout else null,
            stderr=pipe if stderr else null, env=EXEC_ENV, cwd="/", start_new_session=True, pass_fds=namespaces)
    finally:
        for fd in namespaces:
            os.close(fd)
    if processes is not None and not processes.add(netns, proc.pid):
        logger.info("exec {}: pod is being removed, command killed: {}", s.target, shlex.join(argv))
    tasks = [asyncio.create_task(_pump(s, proc.stdout, STDOUT)) if stdout else None,
             asyncio.create_task(_pump(s, proc.stderr, STDERR)) if stderr else None,
             asyncio.create_task(_feed(s, proc.stdin)) if stdin else None]
    try:
        await asyncio.gather(*(t for t in tasks[:2] if t))  # both output pipes at EOF
        code = await proc.wait()
    except asyncio.CancelledError:
        if proc.returncode is None:
            kill_exec(proc.pid)
        raise
    finally:
        for t in tasks:
            if t:
                t.cancel()
        if processes is not None:
            processes.discard(netns, proc.pid)
    if s.gone:
        logger.debug("exec {}: finished after its client left, exit {}: {}", s.target, code, shlex.join(argv))
    return 128 - code if code < 0 else code


async def _pump(s: _Session, stream: asyncio.StreamReader, channel: int) -> None:
    while chunk := await stream.read(65536):
        await s.send(channel, chunk)


async def _feed(s: _Session, pipe: asyncio.StreamWriter) -> None:
    try:
        while (data := await s.stdin.get()) is not _EOF:
            pipe.write(data)
            await pipe.drain()
    except (BrokenPipeError, ConnectionResetError):
        return  # the command stopped reading its stdin
    finally:
        pipe.close()
