"""Leader election on a Lease, with client-go's semantics (tools/leaderelection), so that of several
replicas exactly one watches pods and execs in them.

    standby ── acquired ──▶ leading ── renew deadline passed ──▶ lost      (any ── stop() ──▶ stopped)

- A candidate tries every `retry_period`: `try_acquire_or_renew` is client-go's tryAcquireOrRenew. It
  reads the Lease (creating it when there is none) and takes it when nobody holds it (an empty holder:
  a released Lease is free at once) or when the record has not changed for the record's
  `lease_duration` seconds — counted on this process's own clock from the moment it *saw the record
  change*, never from the record's renewTime, so clock skew between nodes does not matter (only
  their clocks' rates must roughly agree). The write
  carries the resourceVersion read, so of two candidates only one wins (the other gets 409).
- A standby also tries at once whenever it is woken (`wake()`: the controller's watch of the Lease
  calls it on every change), so a released Lease is taken within one round trip, and a renewal is
  seen when it happens, which makes the bound after a leader's death `lease_duration + retry_period`.
  Unlike client-go the retry period has no jitter: the watch, not the period, decides how soon a
  standby looks, and the bound stays lease + retry rather than lease + 2.2 × retry.
- The leader renews every `retry_period`. When renewals keep failing for `renew_deadline` seconds
  (< `lease_duration`), it has lost: `on_stopped_leading` is called and the loop ends; the controller
  then stops every exec and exits non-zero (client-go's users exit too).
- `horizon()`: until when no other candidate can take the Lease, as far as its holder knows: when its
  last successful write was *sent*, plus the lease duration. The controller starts no exec that
  could still run then, so a leader that cannot renew has stopped exec'ing before anyone may start.
- `release()` (SIGTERM, after the controller stopped its execs) is client-go's ReleaseOnCancel: the
  holder cleared, leaseDurationSeconds 1. Unlike client-go it checks the Lease it just read still
  names this candidate, so a late release can never clear a successor's Lease.

Concurrency contract: the loop runs on its own thread (`start()`), the only writer of the election
state, under a lock that readers on other threads (`leader`, `role`, `horizon()`, HTTP handlers and the
exec fence) take for a few attribute reads. Callbacks run on the loop's thread: `on_started_leading`
before the first renewal (it must return within a fraction of the retry period), `on_new_leader` and
`on_stopped_leading` must not block. Clocks are injected (`clock`: monotonic seconds for every decision;
`wallclock`: the times written into the record, for people).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

from loguru import logger

from .k8s.errors import Conflict, K8sError, advice
from .model import LeaseRecord

#: client-go's check: the renew deadline must leave room for more than one retry.
JITTER_FACTOR = 1.2


class Lock(Protocol):
    """What the election needs of a Lease (k8s/leases.py's LeaseLock; a fake in tests)."""

    def describe(self) -> str: ...
    def get(self, timeout: float) -> LeaseRecord | None: ...
    def create(self, record: LeaseRecord, timeout: float) -> None: ...
    def update(self, record: LeaseRecord, timeout: float) -> None: ...


class Role(enum.Enum):
    STANDBY = "standby"
    LEADING = "leading"
    LOST = "lost"
    STOPPED = "stopped"


#: the only transitions there are
TRANSITIONS = {Role.STANDBY: {Role.LEADING, Role.STOPPED}, Role.LEADING: {Role.LOST, Role.STOPPED},
               Role.LOST: {Role.STOPPED}, Role.STOPPED: set()}


def check_timing(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """client-go's constraints (NewLeaderElector); ValueError naming the flags otherwise."""
    if not lease_duration > renew_deadline > JITTER_FACTOR * retry_period > 0:
        raise ValueError(f"leader election needs --lease-duration > --renew-deadline > {JITTER_FACTOR} × "
                         f"--retry-period > 0, not {lease_duration}, {renew_deadline}, {retry_period}")


def _utcnow() -> datetime:
    """Now, never on a whole second: the official client writes a datetime with isoformat(), which leaves
    a zero fraction out, and kube-apiserver parses a MicroTime (renewTime) with exactly six digits."""
    now = datetime.now(timezone.utc)
    return now if now.microsecond else now.replace(microsecond=1)


class Elector:
    def __init__(self, lock: Lock, *, identity: str, lease_duration: int = 15, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, on_started_leading: Callable[[], None] = lambda: None,
                 on_stopped_leading: Callable[[], None] = lambda: None,
                 on_new_leader: Callable[[str], None] = lambda holder: None,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], datetime] = _utcnow,
                 wait: Callable[[threading.Event, float], bool] | None = None) -> None:
        check_timing(lease_duration, renew_deadline, retry_period)
        if not identity:
            raise ValueError("leader election needs an identity")
        self.lock, self.identity = lock, identity
        self.lease_duration, self.renew_deadline, self.retry_period = int(lease_duration), renew_deadline, retry_period
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.on_new_leader = on_new_leader
        self.clock, self.wallclock = clock, wallclock
        #: how the loop waits: `wait(event, seconds)` → whether the event is set (tests pass one that
        #: moves their clock on)
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._lock = threading.Lock()
        self._role = Role.STANDBY
        #: the record last seen or written, and when (on `clock`) it was seen to change
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        #: when (on `clock`) this candidate's last successful write was sent
        self._written_at = float("-inf")
        self._reported: str | None = None
        #: the last failure logged (a standby retries every retry period: a lasting one is said once)
        self._said = ""
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: set once the first try is done (and, when it won, leading has started)
        self.first_try = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what other threads read ----------------------------------------------------------------------

    @property
    def role(self) -> Role:
        with self._lock:
            return self._role

    @property
    def leader(self) -> str:
        """The holder of the record last seen ("" when none, or before the first read)."""
        with self._lock:
            return self._observed.holder if self._observed else ""

    @property
    def observed(self) -> bool:
        """Whether a record of the Lease has been read or written at least once."""
        with self._lock:
            return self._observed is not None

    def horizon(self) -> float:
        """The `clock` time until which no other candidate can take the Lease: when this candidate's last
        successful write was sent, plus the lease duration; -inf when it does not hold the Lease."""
        with self._lock:
            if self._observed is None or self._observed.holder != self.identity:
                return float("-inf")
            return self._written_at + self.lease_duration

    # -- client-go's decisions ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._observed is not None and self._observed.holder == self.identity

    def lease_valid(self, now: float) -> bool:
        """Whether the record last seen is still in force at `now`: it changed less than its own
        lease duration ago, as this process saw it."""
        with self._lock:
            return self._observed is not None and self._observed_at + self._observed.lease_duration > now

    def try_acquire_or_renew(self, timeout: float | None = None) -> bool:
        """One try: True when this candidate holds the Lease afterwards (acquired or renewed)."""
        timeout = self.renew_deadline if timeout is None else timeout
        now, stamp = self.clock(), self.wallclock()
        record = LeaseRecord(holder=self.identity, lease_duration=self.lease_duration, acquire_time=stamp,
                             renew_time=stamp)
        with self._lock:
            observed = self._observed
        # 1. the leader's fast path: write over the Lease as last written, no read first
        if self.is_leader() and self.lease_valid(now):
            mine = dataclasses.replace(record, acquire_time=observed.acquire_time, transitions=observed.transitions)
            try:
                self.lock.update(mine, timeout)
            except K8sError as error:
                logger.debug("lease {}: renewal without a read failed ({}); reading it", self.lock.describe(), error)
            else:
                self._wrote(mine, now)
                return True
        # 2. read, or create when there is none
        try:
            current = self.lock.get(timeout)
        except K8sError as error:
            self._failed(f"cannot read it: {error}", hint=advice(error))
            return False
        if current is None:
            return self._write(self.lock.create, record, timeout, now)
        # 3. what changed is news; a held record in force is someone else's
        with self._lock:
            changed = current != self._observed
            if changed:
                self._observed, self._observed_at = current, self.clock()
        if changed:
            logger.debug("lease {}: held by {!r}, renewed {} (seen changing now)", self.lock.describe(),
                         current.holder, current.renew_time)
        if current.holder and self.lease_valid(now) and not self.is_leader():
            return False
        # 4. take it over (or renew it after a failed fast path)
        if self.is_leader():
            record = dataclasses.replace(record, acquire_time=current.acquire_time, transitions=current.transitions)
        else:
            record = dataclasses.replace(record, transitions=current.transitions + 1)
        return self._write(self.lock.update, record, timeout, now)

    def _write(self, write: Callable[[LeaseRecord, float], None], record: LeaseRecord, timeout: float,
               sent: float) -> bool:
        """`write` (the lock's create or update) the record: whether it went through (a 409 means
        another candidate wrote first: not news worth a warning)."""
        try:
            write(record, timeout)
        except K8sError as error:
            self._failed(f"cannot write it: {error}", "INFO" if isinstance(error, Conflict) else "WARNING",
                         hint=advice(error))
            return False
        self._wrote(record, sent)
        return True

    def _wrote(self, record: LeaseRecord, sent: float) -> None:
        with self._lock:
            self._observed, self._observed_at, self._written_at = record, self.clock(), sent
        self._said = ""

    def _failed(self, what: str, level: str = "WARNING", *, hint: str | None = None) -> None:
        """Log a failed try once while it stays the same failure (then at DEBUG), with `hint` (what to
        check) when there is one."""
        said = f"{what}: {hint}; retrying quietly until it answers" if hint else what
        logger.log(level if what != self._said else "DEBUG", "lease {}: {}", self.lock.describe(),
                   said if what != self._said else what)
        self._said = what

    def report(self) -> None:
        """Tell `on_new_leader` when the holder seen differs from the one last told (client-go's
        maybeReportTransition)."""
        holder = self.leader
        if self.observed and holder != self._reported:
            self._reported = holder
            self.on_new_leader(holder)

    # -- the loop -------------------------------------------------------------------------------------

    def start(self) -> "Elector":
        self._thread = threading.Thread(target=self.run, name="elector", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Try again now (a standby's hint that the Lease changed); callable from any thread."""
        self._wake.set()

    def run(self) -> None:
        """Acquire, then renew until stopped or lost (see the module docstring)."""
        try:
            if not self._acquire() or not self._enter(Role.LEADING):
                return
            try:
                self.on_started_leading()
            except Exception:  # a leader that cannot work must not hold the Lease as if it did
                logger.exception("lease {}: acquired, but leading failed to start", self.lock.describe())
                if self._enter(Role.LOST):
                    self.on_stopped_leading()
                return
            self.first_try.set()
            if not self._renew() and self._enter(Role.LOST):
                self.on_stopped_leading()
        finally:
            self.first_try.set()

    def _acquire(self) -> bool:
        """Try until this candidate holds the Lease (True) or is stopped (False)."""
        logger.info("lease {}: trying to acquire it as {}", self.lock.describe(), self.identity)
        while not self._stop.is_set():
            self._wake.clear()
            acquired = self.try_acquire_or_renew()
            self.report()
            if acquired:
                return True
            self.first_try.set()
            self._wait(self._wake, self.retry_period)
        return False

    def _renew(self) -> bool:
        """Renew every retry period: False once renewing failed for the renew deadline, True when stopped."""
        while not self._wait(self._stop, self.retry_period):
            if not self._renew_once():
                return self._stop.is_set()
        return True

    def _renew_once(self) -> bool:
        """Try every retry period until a renewal succeeds (True), or the renew deadline passes or the loop
        is stopped (False); like client-go, no try starts once the deadline has passed."""
        deadline = self.clock() + self.renew_deadline
        while True:
            renewed = self.try_acquire_or_renew(timeout=deadline - self.clock())
            self.report()
            if renewed:
                return True
            left = deadline - self.clock()
            if left <= 0 or self._wait(self._stop, min(self.retry_period, left)) or self.clock() >= deadline:
                return False

    def stop(self) -> None:
        """End the loop, waiting for a try in flight (it ends within its request timeout, so that a
        release after this never races a renewal); not a release."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.renew_deadline + 1)
        self._enter(Role.STOPPED)

    def _enter(self, role: Role) -> bool:
        """Move to `role` if that is a transition (False: stopped meanwhile, and stopping wins)."""
        with self._lock:
            if role not in TRANSITIONS[self._role]:
                return False
            self._role = role
            return True

    # -- release --------------------------------------------------------------------------------------

    def release(self, timeout: float | None = None) -> bool:
        """Give the Lease up if this candidate still holds it (client-go's ReleaseOnCancel); True when
        it does not hold it any more. Call it once nothing guarded by the Lease runs."""
        deadline = self.clock() + (self.renew_deadline if timeout is None else timeout)
        while self.is_leader() and self.clock() < deadline:
            try:
                current = self.lock.get(deadline - self.clock())
                if current is None or current.holder != self.identity:
                    return True  # someone else's now (or gone): nothing of ours to release
                stamp = self.wallclock()
                released = LeaseRecord(holder="", lease_duration=1, acquire_time=stamp, renew_time=stamp,
                                       transitions=current.transitions)
                self.lock.update(released, deadline - self.clock())
            except Conflict:
                continue  # a renewal in flight moved the version on: read again
            except K8sError as error:
                logger.warning("lease {}: cannot release it: {}", self.lock.describe(), error)
                return False
            self._wrote(released, self.clock())
            logger.info("lease {}: released", self.lock.describe())
            return True
        return not self.is_leader()
