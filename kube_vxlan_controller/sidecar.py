"""Sidecar: one pod's way into its sidecar agent — requests over one session, or one exec each.

    sidecar = Sidecar(executor, container="vxlan-controller-agent", timeout=11, sessions=True)
    result, execs = sidecar.ask(pod, "fdb", batch)      # "fdb" | "links" (link batch, fdb batch) | "state"
    sidecar.close()

A request is one of `agentsession.KINDS`. With sessions on, it goes over the pod's session
(`agentsession`, `k8s.sessions`), opened at the first request: after that a request costs no exec. With
sessions off, or when the pod cannot keep a session, it is the one exec per request the controller has
always run (`exec_form`: the same batch, the same commands, on stdin).

A session's life, as this pod sees it:
- opened by the first request (one exec, counted in `execs`), which the opening carries in its argv when
  it is an fdb batch of up to `agentsession.CARRIED_MAX` characters packed (a pod's first sync, most
  often): the shell runs it before it reads its stdin, as `timeout bridge` would in an exec, and does
  not read it one byte at a time;
- ended (the command exited, the connection closed or broke, a reply timed out or was unreadable): the
  end is logged at debug level and counted (`kvc_session_ends_total{reason}`); the request that found
  it goes over a new session at once, unless it could have run already and cannot be re-sent blindly (a
  link change: `ApiUnavailable`, so the caller re-reads the pod before trying again) — an fdb batch and
  a read can;
- a session that ends before its first reply is one this pod cannot keep (the agent image lacks what the
  session needs, or something between cuts long-lived streams): the request goes as one exec, and so
  does every request until `retry()` (the pod actor calls it at each resync). Logged once at info level,
  counted (`kvc_session_fallbacks_total`);
- a reply that does not come within the deadline: `ExecTimeout`, the session is closed, as an exec's
  timeout is; the next request opens another.
Errors that say the pod cannot be reached at all (`PodGone`, `Forbidden`, `ExecTimeout`, `Cancelled`,
`LeaseEnding`) propagate whichever way the request went.

Concurrency contract: one thread (the pod actor's) uses a Sidecar; `ask` blocks it for at most about
two exec deadlines (a session found ended, then its successor).
"""

from __future__ import annotations

from loguru import logger

from . import agent
from .agentsession import ReplyError, carried, parse_reply, reply_end, request, session_argv
from .k8s.errors import ApiUnavailable, Cancelled, ExecTimeout, Forbidden, K8sError, LeaseEnding, PodGone
from .k8s.sessions import Session, SessionEnded
from .model import ExecResult, Pod

#: errors that end a request whichever way it goes: the pod cannot be reached, or must not be
_UNREACHABLE = (PodGone, Forbidden, ExecTimeout, Cancelled, LeaseEnding)


def exec_form(kind: str, bodies: tuple[str, ...], timeout: int) -> tuple[list[str], str | None]:
    """The one exec that does what a session request of `kind` does: its argv and its stdin."""
    if kind == "state":
        return list(agent.STATE_ARGV), None
    if kind == "fdb":
        return agent.batch_argv("bridge", timeout), bodies[0]
    if kind == "links":
        return agent.converge_argv(timeout, bodies[0]), bodies[1]
    raise ValueError(f"unknown request {kind!r}")


class _Fallback(Exception):
    """This pod cannot keep a session now: why, and how many sessions the request opened trying."""

    def __init__(self, reason: str, opened: int) -> None:
        super().__init__(reason)
        self.reason, self.opened = reason, opened


class Sidecar:
    def __init__(self, executor, *, container: str, timeout: int, sessions: bool, metrics=None) -> None:
        self.executor, self.container, self.timeout = executor, container, timeout
        self.sessions, self.metrics = sessions, metrics
        self.session: Session | None = None
        #: why this pod runs one exec per request now; None: it uses sessions (when they are on)
        self.fallback: str | None = None
        self._ident = 0

    def ask(self, pod: Pod, kind: str, *bodies: str, suspect: bool = False) -> tuple[ExecResult, int]:
        """Run a request in the pod's sidecar; return its result (whatever its exit code) and the number
        of execs it took (0 over an open session)."""
        opened = 0
        if self.sessions and self.fallback is None:
            try:
                return self._over_session(pod, kind, bodies, suspect)
            except _Fallback as why:
                opened = why.opened
                self.fallback = why.reason
                logger.info("pod {}: no session into its sidecar ({}); one exec per request until its next "
                            "resync", pod.key, why.reason)
                if self.metrics is not None:
                    self.metrics.session_fallbacks.inc()
        argv, stdin = exec_form(kind, bodies, self.timeout)
        result = self.executor.run(pod.namespace, pod.name, self.container, argv, stdin=stdin, suspect=suspect)
        return result, opened + 1

    def retry(self) -> None:
        """Try a session again at the next request (after a fallback)."""
        self.fallback = None

    def close(self, reason: str = "closed by us") -> None:
        if self.session is not None:
            self.session.close(reason)
            self._ended(self.session)

    # -- sessions -----------------------------------------------------------------------------------

    def _over_session(self, pod: Pod, kind: str, bodies: tuple[str, ...], suspect: bool) -> tuple[ExecResult, int]:
        opened = 0
        while True:
            self._ident += 1
            first = None
            if self.session is None:
                first = carried(kind, *bodies)
                try:
                    self.session = self.executor.open_session(
                        pod.namespace, pod.name, self.container,
                        session_argv(self.timeout, None if first is None else (self._ident, first)), suspect=suspect)
                except _UNREACHABLE:
                    raise
                except K8sError as error:
                    raise _Fallback(f"it could not be opened: {error}", opened) from error
                opened += 1
                self._gauge(+1)
            session = self.session
            try:
                text = session.ask("" if first is not None else request(self._ident, kind, *bodies),
                                   reply_end(self._ident), deadline=self.executor.deadline)
                result = parse_reply(self._ident, text)
                if self.metrics is not None:
                    self.metrics.session_requests.inc()
                return result, opened
            except SessionEnded as end:
                self._ended(session)
                if session.replies == 0:
                    raise _Fallback(f"it ended before its first reply: {session.why}", opened) from end
                logger.debug("pod {}: session ended after {} replies: {}", pod.key, session.replies, session.why)
                if end.written and kind == "links":
                    raise ApiUnavailable(f"pod {pod.key}: the session ended before its link change was "
                                         f"acknowledged: {session.why}") from end
            except ExecTimeout:
                self._ended(session)
                raise
            except ReplyError as error:
                session.close("unreadable")
                self._ended(session)
                raise _Fallback(f"its reply was unreadable: {error}", opened) from error

    def _ended(self, session: Session) -> None:
        """Forget an ended session, counting its end once."""
        if self.session is session:
            self.session = None
            self._gauge(-1)
            if self.metrics is not None:
                self.metrics.session_ends.labels(session.ended or "closed").inc()

    def _gauge(self, delta: int) -> None:
        if self.metrics is not None:
            self.metrics.sessions_open.inc(delta)
