"""A session: one long-lived exec into a container, its stdin kept open, carrying request after request.

    session = executor.open_session(namespace, pod, container, argv)   # one exec (execs.Executor)
    text = session.ask("request\\n", re.compile("end of reply\\n"), deadline=10)
    session.close()

What a request and a reply are is the caller's business (`agentsession`); a session writes text to the
command's stdin and reads its stdout until `end` matches, within the deadline. It never closes stdin:
the command runs until the session is closed (its stdin then ends), its container or the connection
goes, or something in between times it out (the API server closes an exec that carried no data for 4 h;
proxies and load balancers, often sooner).

Ends, all normal and all told apart by `SessionEnded.reason`:
- "exited": the command ended (its status arrived on channel 3; the container restarted, or the command
  could not run at all);
- "closed": the server closed the websocket without a status (an API server or kubelet that restarted,
  an idle timeout);
- "broke": the connection failed (a reset, a TLS error);
- "timeout": a reply did not come within its deadline (`ask` raises `ExecTimeout`, as an exec would, and
  closes the session: what the command does with the rest is its business, see agentsession);
- "closed by us": `close()`;
- "fenced": closed by the executor when the leader's fence passed (`Executor._close_sessions_at_fence`).
An end is noticed when the session is next used (`ask` looks before it writes): nothing reads an idle
session. `SessionEnded.written` says whether the request that found the end had been written.

Admission: every `ask` passes the executor's checks before writing (`Cancelled` when the process is
stopping, `LeaseEnding` when the reply could come after the leader's fence), so a deposed leader writes
nothing into any session. Asks take no exec slot: the slots bound opening websockets, and an ask opens
none.

Concurrency contract: one thread at a time uses a session (the pod actor that owns it), except `close`,
which the executor's fence thread may also call (by then `admit` refuses every ask); `ask` blocks that
thread for at most its deadline (plus one socket operation, `websockets.SOCKET_TIMEOUT`, on a broken link).
"""

from __future__ import annotations

import re
import time
from typing import Callable

from ..model import ExecResult
from .errors import ExecTimeout, K8sError

_STDOUT, _STDERR, _STATUS = 1, 2, 3


class SessionEnded(K8sError):
    """The session ended; `reason` is one of the module docstring's; `written`: the request was sent."""

    def __init__(self, message: str, *, reason: str, written: bool) -> None:
        super().__init__(message)
        self.reason, self.written = reason, written


class Session:
    """An open exec (a `WSClient`) and what is known of it; made by `Executor.open_session`."""

    def __init__(self, ws, where: str, admit: Callable[[str, float], None],
                 result: Callable[[str, str, str], ExecResult]) -> None:
        self._ws = ws
        #: the command's result from its status (channel 3), stdout and stderr texts (`execs._result`)
        self._result = result
        #: "namespace/pod [container]", for messages
        self.where = where
        self._admit = admit
        self.opened_at = time.monotonic()
        #: replies received so far
        self.replies = 0
        #: why it ended; None while open
        self.ended: str | None = None
        self._detail = ""
        self._buffer = ""

    def ask(self, text: str, end: re.Pattern[str], *, deadline: float) -> str:
        """Write `text`, then read stdout until `end` matches; return what was read up to the match's end.
        An empty `text` writes nothing: the command was started with the request (after the executor's
        checks), and its reply comes first.

        Raises `SessionEnded` (the session is over: open another), `ExecTimeout` (no reply in time: the
        session is closed), and the executor's `Cancelled` / `LeaseEnding` (nothing written, the session
        stays open)."""
        if self.ended is None:
            if text:  # else the opening carried the request: it was admitted then, and runs already
                self._admit(f"request in the session in {self.where}", deadline)
            self._read(0)
        if self.ended is not None:
            raise self._end_error(written=False)
        try:
            if text:
                self._ws.write_stdin(text)
        except Exception as exc:  # noqa: BLE001 - a websocket frame arrives whole or not at all
            self._end("broke", str(exc))
            raise self._end_error(written=False) from exc
        deadline_at = time.monotonic() + deadline
        while True:
            match = end.search(self._buffer)
            if match is not None:
                reply, self._buffer = self._buffer[:match.end()], self._buffer[match.end():]
                self.replies += 1
                return reply
            if self.ended is not None:
                raise self._end_error(written=True)
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                self.close("timeout")
                raise ExecTimeout(f"session in {self.where}: no reply within its deadline ({deadline:g}s)")
            self._read(remaining)

    def close(self, reason: str = "closed by us") -> None:
        """End the session (its command's stdin ends); closing an ended session does nothing."""
        if self.ended is None:
            self._end(reason)
        try:
            self._ws.close(timeout=0)
        except Exception:  # noqa: BLE001 - closing a broken socket can fail; it is gone either way
            pass
        sock = getattr(self._ws, "sock", None)
        if sock is not None:
            try:
                sock.shutdown()
            except Exception:  # noqa: BLE001 - already closed
                pass

    @property
    def why(self) -> str:
        """How it ended, in words (the reason and what came with it: an exit status, stderr, an error)."""
        return f"{self.ended}{': ' + self._detail if self._detail else ''}" if self.ended else "open"

    # -- reading --------------------------------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        """Take in what arrived within `timeout` seconds; notice an end."""
        ws = self._ws
        try:
            ws.update(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - websocket and socket errors: the connection is gone
            self._buffer += ws.read_channel(_STDOUT, timeout=None) if _has(ws, _STDOUT) else ""
            self._end("broke", str(exc))
            return
        if _has(ws, _STDOUT):
            self._buffer += ws.read_channel(_STDOUT, timeout=None)
        if _has(ws, _STATUS):
            stderr = ws.read_channel(_STDERR, timeout=None) if _has(ws, _STDERR) else ""
            result = self._result(ws.read_channel(_STATUS, timeout=None), "", stderr)
            said = result.stderr.strip().replace("\n", "; ")[-400:]
            self._end("exited", f"exit {result.exit_code}{': ' + said if said else ''}")
        elif not ws.is_open():
            self._end("closed", "the server closed the connection")

    def _end(self, reason: str, detail: str = "") -> None:
        if self.ended is None:
            self.ended, self._detail = reason, detail
            self.close(reason)

    def _end_error(self, *, written: bool) -> SessionEnded:
        return SessionEnded(f"session in {self.where} ended: {self.why}", reason=self.ended or "closed",
                            written=written)


def _has(ws, channel: int) -> bool:
    """Whether `channel` holds data already read (the client's buffers; reading them never blocks)."""
    return channel in ws._channels
