"""Pod status conditions: the `vxlan.openvnf.org/Wired` condition, patched through `pods/status`.

`patch_condition` is one PATCH of the pod's status subresource: a strategic merge patch (what the
official client sends for a dict body) holding the one condition, which the API server merges into
`status.conditions` by `type`, leaving the kubelet's conditions alone. `lastTransitionTime` is sent only
when the status flips, so the API keeps the time of the last flip when only the message changes. The
patch names the pod's UID: a pod re-created with the same name is never written with its predecessor's
condition (the API refuses to change a UID).

`ConditionWriter` does these patches off the actors' threads, so no actor blocks on the API. Latest wins
per pod: conditions handed over for a pod while its patch waits or runs collapse into one patch of the
newest. A change of status or reason is written at once. A change of the message alone (the peer counts
move with every join in a busy network) waits: at most once per `message_interval` (10 s) per pod, and
at most `message_rate` (2) such patches a second for all pods together, taken in turn. Without the
shared budget a churning network of 200 cost 20 patches a second, each a watch event to every pod
watcher; measured on the sandbox (bench churn, 30 s), it slowed pod starts and doubled leave lags. With
it the counts of a pod in a churning network of N lag by up to about N / 2 seconds, while the status
itself (the readiness gate) is never late; once the churn stops every message is exact again within
that time. (client-go's default budget for all of a controller's requests is 5 a second.)
A failed patch is retried with that pod's own backoff (0.8 s ×2, capped at 30 s) unless a newer
condition came meanwhile; a pod that is gone (404, or a UID that is not the pod's any more: 409/422) is
dropped; a denial (RBAC without `patch` on `pods/status`) is logged once, until a patch goes through.

Concurrency contract: `write` may be called from any thread and never block (a dict under
a lock and a hand-off to the pool); the patches run on `workers` threads, one REST call each, bounded by
its request timeout; retries are reminders from the controller's scheduler (`tell`, one thread for all).
`close()` drops what waits.
"""

from __future__ import annotations

import datetime
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.errors import Forbidden, K8sError, PodGone, classify
from kube_vxlan_controller.model import Condition, Pod
from kube_vxlan_controller.wired import CONDITION_TYPE

#: (connect, read) seconds.
REQUEST_TIMEOUT = (5.0, 15.0)
#: seconds between two patches of one pod whose condition's status did not flip
MESSAGE_INTERVAL = 10.0
#: message-only patches a second, all pods together
MESSAGE_RATE = 2.0


def condition_patch(pod: Pod, condition: Condition, *, transition: bool,
                    now: datetime.datetime | None = None) -> dict:
    """The strategic merge patch body that sets `condition` on `pod`."""
    entry: dict = {"type": CONDITION_TYPE, "status": "True" if condition.status else "False",
                   "reason": condition.reason, "message": condition.message, "lastProbeTime": None}
    if transition:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        entry["lastTransitionTime"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"uid": pod.uid}, "status": {"conditions": [entry]}}


def patch_condition(cluster: Cluster, pod: Pod, condition: Condition, *, transition: bool) -> None:
    """PATCH the pod's status with `condition`; raises the project's `K8sError`s."""
    try:
        cluster.core().patch_namespaced_pod_status(pod.name, pod.namespace,
                                                   condition_patch(pod, condition, transition=transition),
                                                   _request_timeout=REQUEST_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - sorted by classify, the one place that does
        raise classify(exc) from exc


class ConditionWriter:
    """Patches pods' Wired conditions on a few threads of its own; see the module docstring."""

    def __init__(self, cluster: Cluster, scheduler, *, workers: int = 2, backoff=Backoff,
                 message_interval: float = MESSAGE_INTERVAL, message_rate: float = MESSAGE_RATE,
                 clock=time.monotonic) -> None:
        self.cluster, self.scheduler = cluster, scheduler
        self.message_interval, self.message_gap, self.clock = message_interval, 1.0 / message_rate, clock
        #: the earliest time the next message-only patch may go (the shared budget's next free turn)
        self._message_turn = float("-inf")
        #: uid → when its last patch went through, and what it wrote (a message-only change waits)
        self._written: dict[str, tuple[float, Condition]] = {}
        #: uids whose message-only change waits for a reminder from the scheduler
        self._deferred: set[str] = set()
        #: `_written` is pruned of entries older than the interval when it grows past this
        self._prune_at = 1024
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conditions")
        self._lock = threading.Lock()
        #: uid → (pod, condition, transition) waiting to be written
        self._pending: dict[str, tuple[Pod, Condition, bool]] = {}
        #: uids handed to the pool and not started yet
        self._queued: set[str] = set()
        self._backoffs: dict[str, Backoff] = {}
        self._make_backoff = backoff
        self._denied = False
        self._closed = False

    def write(self, pod: Pod, condition: Condition, transition: bool) -> None:
        """Have `condition` written on `pod` (soon; the newest wins)."""
        with self._lock:
            if self._closed:
                return
            waiting = self._pending.get(pod.uid)
            transition = transition or (waiting is not None and waiting[2])
            self._pending[pod.uid] = (pod, condition, transition)
            at, last = self._written.get(pod.uid, (float("-inf"), None))
            message_only = not transition and last is not None and (last.status, last.reason) == (
                condition.status, condition.reason)
            if message_only:
                if pod.uid in self._deferred:
                    return  # its turn is booked: the newest pending condition is written then
                now = self.clock()
                turn = max(now, at + self.message_interval, self._message_turn)
                self._message_turn = turn + self.message_gap
                if turn > now:
                    self._deferred.add(pod.uid)
                    self.scheduler.tell_later(turn - now, self, pod.uid)
                    return
        self._submit(pod.uid)

    def _forget(self, uid: str) -> None:
        """The pod is gone: drop what waits for it."""
        with self._lock:
            self._pending.pop(uid, None)
            self._backoffs.pop(uid, None)
            self._written.pop(uid, None)

    def tell(self, uid: str) -> None:
        """The scheduler's reminder that a pod's retry, or its deferred message-only change, is due."""
        with self._lock:
            self._deferred.discard(uid)
        self._submit(uid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, uid: str) -> None:
        with self._lock:
            if self._closed or uid in self._queued or uid not in self._pending:
                return
            self._queued.add(uid)
        try:
            self._pool.submit(self._run, uid)
        except RuntimeError:  # shut down meanwhile: closing
            pass

    def _run(self, uid: str) -> None:
        with self._lock:
            self._queued.discard(uid)
            work = self._pending.pop(uid, None)
        if work is None:
            return
        pod, condition, transition = work
        try:
            patch_condition(self.cluster, pod, condition, transition=transition)
        except PodGone:
            self._forget(uid)
            return
        except K8sError as error:
            if error.status in (409, 422):  # the name is another pod's now
                self._forget(uid)
                return
            self._failed(uid, work, error)
            return
        with self._lock:
            self._backoffs.pop(uid, None)
            self._denied = False
            self._written[uid] = (now := self.clock(), condition)
            if len(self._written) > self._prune_at:  # pods come and go: forget what no longer matters
                self._written = {u: w for u, w in self._written.items() if now - w[0] < self.message_interval}
                self._prune_at = max(1024, 2 * len(self._written))
        logger.debug("pod {}: condition {} {} ({}: {})", pod.key, CONDITION_TYPE, condition.status,
                     condition.reason, condition.message)

    def _failed(self, uid: str, work: tuple[Pod, Condition, bool], error: K8sError) -> None:
        pod = work[0]
        with self._lock:
            if self._closed:
                return
            self._pending.setdefault(uid, work)  # unless a newer one came meanwhile
            delay = self._backoffs.setdefault(uid, self._make_backoff()).next()
            first_denial, self._denied = isinstance(error, Forbidden) and not self._denied, \
                self._denied or isinstance(error, Forbidden)
        self.scheduler.tell_later(delay, self, uid)
        if first_denial:
            logger.error("cannot patch pods/status, the {} condition is not written (the controller still "
                         "works): {}", CONDITION_TYPE, error)
        elif not isinstance(error, Forbidden):
            logger.warning("pod {}: could not write condition {} (retrying in {:.1f}s): {}", pod.key, CONDITION_TYPE,
                           delay, error)
