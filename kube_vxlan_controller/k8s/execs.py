"""Commands run in a pod's container through the exec API, each with a hard deadline.

How one exec goes (the measured client behaviour, see KUBERNETES-CLIENT-NOTES.md):
1. wait for a slot: process-wide slots bound concurrent execs (`max_concurrent`, default 32), so a
   thousand pods starting together do not open a thousand websockets; they are served in the order
   they asked (`slots.FairSlots`). Waiting for a slot is not part of the deadline and never a timeout:
   a pod waiting for its turn is not hung;
2. open the websocket (websockets.py: one TLS context for all, the bearer token, the v5 protocol offered
   first);
3. write stdin, then close channel 0 (EOF; only the v5 channel protocol can say it, so stdin on an
   older server is refused up front rather than hanging until the deadline);
4. `run_forever(timeout=remaining)`; then read stdout/stderr without blocking (`timeout=0`) and the
   exit status from channel 3 (a Kubernetes Status);
5. close the websocket, always.

A fence (`fence`, for the leader election): a callable giving the `time.monotonic()` by which every
exec must have ended, the command in the pod included. An exec that could run past it, deadline
counted, is not started (`LeaseEnding`): the leader's Lease might have expired by then and another
leader be exec'ing. Sessions (long-lived execs) are fenced twice: no request is written into one that
could be answered after the fence (`admit`), and once the fence has passed a thread of the executor
closes every session still open, so their commands end in the pods.

Outcomes: an `ExecResult` whenever the command ran to its end, whatever its exit code; `ExecTimeout`
when the deadline passed first (the command may still run in the pod: callers wrap long commands in
`timeout N`); `PodGone` when the pod or container is not there; `ApiUnavailable` when the connection
failed or broke before an exit status arrived; `K8sError` otherwise.

Exit status: `{"status":"Success"}` → 0; a Failure with an `ExitCode` cause → that code; a Failure
without one (the runtime could not start the command, e.g. a missing binary under containerd) →
`EXEC_FAILED` (126, the shell's "cannot execute") with the Status message appended to stderr.

Outcomes as counted (the observer's first argument): "ok" when the command ended with an exit code the
caller expected (`ok`, default 0: the release of an init agent expects 137, its shell killed along with
the agent), "nonzero" for any other exit code, "session" for a session opened (`open_session`: a
long-lived exec, see sessions.py), else the exception's kind.

Logging: only at debug level. A non-zero exit may be expected (`fdb del` of a missing entry), and
errors are raised, so the caller, which knows what the command meant, logs each failure once.

Concurrency contract: `run` may be called from any number of threads at once; each call blocks its
thread for the slot wait plus at most about `deadline` (and up to a second for the server's close frame;
an upgrade the server never answers at all ends after `websockets.SOCKET_TIMEOUT`). The observer, if
given, is called on the calling thread after every exec that got a slot.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from loguru import logger

from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.sessions import Session
from kube_vxlan_controller.k8s.websockets import ExecSockets
from kube_vxlan_controller.k8s.errors import (ApiUnavailable, Cancelled, ExecTimeout, K8sError, LeaseEnding, PodGone,
                                              classify)
from kube_vxlan_controller.model import ExecResult
from kube_vxlan_controller.slots import FairSlots

#: exit code reported when the runtime could not run the command and gave no exit code.
EXEC_FAILED = 126
#: seconds to wait for the server's close frame after a finished exec.
CLOSE_WAIT = 1.0
V5_PROTOCOL = "v5.channel.k8s.io"
_STATUS_CHANNEL = 3

#: (outcome, seconds): outcome is one of OUTCOMES; seconds count from the slot to the end.
Observer = Callable[[str, float], None]
OUTCOMES = ("ok", "nonzero", "timeout", "gone", "unavailable", "error", "session")
#: the exit codes a caller expects unless it says otherwise
OK = frozenset({0})
#: seconds between two looks at the fence by the thread that closes the sessions once it passed
FENCE_CHECK = 0.1


class Executor:
    """Runs argv lists in containers; one per process (it owns the concurrency limit)."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        deadline: float = 10.0,
        max_concurrent: int = 32,
        observer: Observer | None = None,
        stopping: threading.Event | None = None,
        fence: Callable[[], float] | None = None,
    ) -> None:
        if deadline <= 0 or max_concurrent < 1:
            raise ValueError(f"bad executor: deadline={deadline} max_concurrent={max_concurrent}")
        self.deadline = deadline
        self.max_concurrent = max_concurrent
        self._slots = FairSlots(max_concurrent)
        #: pods whose last exec timed out share a few slots of their own, so that a node full of hung
        #: pods cannot hold every slot for a whole deadline while healthy pods wait.
        suspect = max(1, max_concurrent // 8)
        self._suspect_slots = FairSlots(suspect)
        #: opens every exec's websocket (all on one TLS context), on as many threads as there are slots
        self.sockets = ExecSockets(cluster.core(), threads=max_concurrent + suspect)
        self._observer = observer
        self._stopping = stopping or threading.Event()
        self._fence = fence
        #: the sessions opened and not forgotten by their owners, closed when the fence passes
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()
        self._fence_watch: threading.Thread | None = None

    def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: list[str],
        *,
        stdin: str | None = None,
        deadline: float | None = None,
        suspect: bool = False,
        ok: frozenset[int] = OK,
    ) -> ExecResult:
        """Run `argv` in `namespace/pod`'s `container`, feeding it `stdin` if given; `ok`: the exit codes
        the caller expects (counted "ok"; the result is returned whatever the code).

        Blocks for a free slot first (one of the few suspect slots when `suspect`: the pod's last exec
        timed out), then for at most `deadline` seconds (default: the executor's). Raises `Cancelled`
        without running anything when the process began stopping while this call waited for its slot,
        `LeaseEnding` when the exec could outlast the fence.
        """
        limit = self.deadline if deadline is None else deadline
        with self._suspect_slots if suspect else self._slots:
            self.admit(f"exec in {namespace}/{pod} [{container}]", limit)
            with self._counted(f"exec {namespace}/{pod} [{container}] {argv}") as tally:
                result = self._exec(namespace, pod, container, argv, stdin, tally.started + limit)
                tally.outcome = "ok" if result.exit_code in ok else "nonzero"
                return result

    @contextmanager
    def _counted(self, what: str):
        """Times and counts what runs inside (the observer, a debug line): the outcome is what the body
        sets `outcome` to, else the kind of exception that left it."""
        tally = _Tally(time.monotonic())
        try:
            yield tally
        except Exception as exc:
            tally.outcome = next((kind for error, kind in _KINDS if isinstance(exc, error)), "error")
            raise
        finally:
            seconds = time.monotonic() - tally.started
            logger.debug("{}: {} in {:.3f}s", what, tally.outcome, seconds)
            self._observe(tally.outcome, seconds)

    def _exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: list[str],
        stdin: str | None,
        deadline_at: float,
    ) -> ExecResult:
        where = f"{namespace}/{pod} [{container}]"
        ws = self._connect(where, namespace, pod, container, argv, stdin is not None, deadline_at)
        finished = False
        try:
            if stdin is not None:
                if ws.subprotocol != V5_PROTOCOL:
                    raise K8sError(
                        f"exec in {where}: stdin needs the {V5_PROTOCOL} protocol (Kubernetes 1.30 or "
                        f"later), the server chose {ws.subprotocol or 'none'}"
                    )
                ws.write_stdin(stdin)
                ws.close_channel(0)
            status = self._wait(ws, where, deadline_at)
            finished = True
            stdout = ws.read_stdout(timeout=0)
            stderr = ws.read_stderr(timeout=0)
        except K8sError:
            raise
        except Exception as exc:  # noqa: BLE001 - websocket and socket errors are sorted by classify
            raise _located(where, exc) from exc
        finally:
            _close(ws, CLOSE_WAIT if finished else 0)
        return _result(status, stdout, stderr)

    def _connect(self, where: str, namespace: str, pod: str, container: str, argv: list[str], stdin: bool,
                 deadline_at: float):
        """The exec's websocket (a `WSClient`), its command started."""
        try:
            return self.sockets.open(namespace, pod, container, argv, stdin=stdin)
        except Exception as exc:  # noqa: BLE001 - sorted by classify
            if time.monotonic() >= deadline_at:
                raise ExecTimeout(f"exec in {where} could not start before its deadline: {exc}") from exc
            raise _located(where, exc) from exc

    def admit(self, what: str, limit: float) -> None:
        """Raise unless `what` may start now and run `limit` seconds: `Cancelled` when the process is
        stopping, `LeaseEnding` when it could outlast the fence."""
        if self._stopping.is_set():
            raise Cancelled(f"{what} not started: stopping")
        if self._fence is not None and time.monotonic() + limit > self._fence():
            raise LeaseEnding(f"{what} not started: it could outlast this leader's Lease, which has not "
                              f"been renewed lately")

    def open_session(self, namespace: str, pod: str, container: str, argv: list[str], *,
                     suspect: bool = False) -> Session:
        """Start `argv` in the container with stdin open and return it as a `sessions.Session`.

        One exec: it waits for a slot and passes the same checks as `run`, and is counted with the
        outcome "session" once the websocket is open (its failures as `run`'s are). Whether the command
        runs at all shows at the session's first `ask`."""
        where = f"{namespace}/{pod} [{container}]"
        with self._suspect_slots if suspect else self._slots:
            self.admit(f"session in {where}", self.deadline)
            with self._counted(f"session {where}: opening") as tally:
                ws = self._connect(where, namespace, pod, container, argv, True, tally.started + self.deadline)
                tally.outcome = "session"
        session = Session(ws, where, self.admit, _result)
        with self._sessions_lock:
            self._sessions.add(session)
            if self._fence is not None and self._fence_watch is None:
                self._fence_watch = threading.Thread(target=self._close_sessions_at_fence, name="exec-fence",
                                                     daemon=True)
                self._fence_watch.start()
        return session

    def _close_sessions_at_fence(self) -> None:
        """Close every open session once the fence has passed, and any opened after (none should be: `admit`
        refuses). A session is an exec, and every exec must have ended by the fence: a request into one is
        refused before then already (`admit`), but the command itself, idle in the pod, would run on until
        this process exits, alongside a new leader's execs. Its stdin ends, so it ends in the pod."""
        while not self._stopping.wait(FENCE_CHECK):
            if time.monotonic() < self._fence():
                continue
            with self._sessions_lock:
                fenced = [session for session in self._sessions if session.ended is None]
            for session in fenced:
                logger.debug("session {}: closed: the leader's fence passed", session.where)
                session.close("fenced")

    def _wait(self, ws, where: str, deadline_at: float) -> str:
        """Wait until the command ends; return its Status text (channel 3)."""
        broken: Exception | None = None
        remaining = deadline_at - time.monotonic()
        if remaining > 0:
            try:
                ws.run_forever(timeout=remaining)
            except Exception as exc:  # noqa: BLE001 - a status that arrived before the break still counts
                broken = exc
        status = _read_status(ws)
        if status:
            return status
        if broken is not None:
            raise ApiUnavailable(f"exec in {where}: connection broke before the exit status: {broken}") from broken
        if ws.is_open():
            raise ExecTimeout(f"exec in {where} did not finish within its deadline")
        raise ApiUnavailable(f"exec in {where}: the server closed the connection without an exit status")

    def _observe(self, outcome: str, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(outcome, seconds)
        except Exception:  # noqa: BLE001 - metrics must never break an exec
            logger.exception("exec observer failed")


@dataclass(slots=True)
class _Tally:
    started: float
    outcome: str = "error"


#: the outcome counted for each exception an exec raises (any other: "error")
_KINDS = ((ExecTimeout, "timeout"), (PodGone, "gone"), (ApiUnavailable, "unavailable"))


def _located(where: str, exc: BaseException) -> K8sError:
    """`classify(exc)`, its message prefixed with the container it was about."""
    error = classify(exc)
    return type(error)(f"exec in {where}: {error}", status=error.status)


def _read_status(ws) -> str:
    try:
        return ws.read_channel(_STATUS_CHANNEL, timeout=0) or ""
    except Exception:  # noqa: BLE001 - a broken socket: only the buffered status matters
        return ""


def _result(status_text: str, stdout: str, stderr: str) -> ExecResult:
    """The ExecResult for a Kubernetes Status from channel 3 (see the module docstring)."""
    try:
        status = json.loads(status_text)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        return ExecResult(EXEC_FAILED, stdout, _append(stderr, f"unreadable exec status: {status_text!r}"))
    if status.get("status") == "Success":
        return ExecResult(0, stdout, stderr)
    for cause in (status.get("details") or {}).get("causes") or ():
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return ExecResult(int(cause.get("message")), stdout, stderr)
            except (TypeError, ValueError):
                break
    message = status.get("message") or status.get("reason") or "exec failed without an exit code"
    return ExecResult(EXEC_FAILED, stdout, _append(stderr, str(message)))


def _append(stderr: str, line: str) -> str:
    if stderr and not stderr.endswith("\n"):
        stderr += "\n"
    return stderr + line


def _close(ws, wait: float) -> None:
    try:
        ws.close(timeout=wait)
    except Exception:  # noqa: BLE001 - closing a broken socket can fail; it is gone either way
        pass
    # When the server closed first (the usual case, right after the exit status), WSClient.close()
    # returns early and leaves the socket open: shut it down, or every exec leaks a descriptor.
    sock = getattr(ws, "sock", None)
    if sock is not None:
        try:
            sock.shutdown()
        except Exception:  # noqa: BLE001 - already closed
            pass
