"""The leader election's Lease: one coordination.k8s.io/v1 Lease, read, created, updated and watched.

`LeaseLock` is client-go's `resourcelock.LeaseLock`: `get()` reads the Lease and keeps it; `update()`
writes a record onto the Lease as last read or written, with that resourceVersion, so the API server
refuses it (409, `Conflict`) when anyone wrote the Lease in between: of two candidates that read the
same record, only one can win. `create()` makes the Lease when there is none (409 when another
candidate was faster). Records cross this boundary as `model.LeaseRecord`, never as client models.

`LeaseWatch` follows the one Lease (a field selector on its name, so RBAC `resourceNames` can limit
it) and calls `on_change()` after its list and on every change: a hint to look again at once (a
release, a renewal), never a record in itself.

Errors are the project's (`errors.classify`): `Conflict` for a 409, `ApiUnavailable`, `Forbidden`, ….

Concurrency contract: a `LeaseLock` belongs to one thread (the elector's); each call blocks for one
REST call, at most `timeout` seconds. `LeaseWatch.run()` blocks its own thread; `stop()` may be called
from any thread.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.errors import K8sError, classify
from kube_vxlan_controller.k8s.listwatch import CONNECT_TIMEOUT, ListWatch
from kube_vxlan_controller.model import LeaseRecord


class LeaseLock:
    """The Lease `namespace/name` as a lock: get, create, update (see the module docstring)."""

    def __init__(self, cluster: Cluster, *, namespace: str, name: str) -> None:
        self._api = cluster.coordination()
        self.namespace, self.name = namespace, name
        #: the Lease as last read or written: its resourceVersion guards the next update.
        self._lease: client.V1Lease | None = None

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    def get(self, timeout: float) -> LeaseRecord | None:
        """The record the Lease holds now; None when there is no Lease."""
        try:
            self._lease = self._api.read_namespaced_lease(self.name, self.namespace,
                                                          _request_timeout=_timeout(timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise classify(exc) from exc
        except Exception as exc:  # noqa: BLE001 - urllib3 and socket errors are sorted by classify
            raise classify(exc) from exc
        return _record(self._lease.spec)

    def create(self, record: LeaseRecord, timeout: float) -> None:
        body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                              spec=_spec(record))
        self._lease = self._call(self._api.create_namespaced_lease, self.namespace, body, timeout)

    def update(self, record: LeaseRecord, timeout: float) -> None:
        """Write `record` onto the Lease last read or written; `Conflict` when it changed since."""
        if self._lease is None:
            raise K8sError(f"lease {self.describe()}: update before it was read or created")
        body = client.V1Lease(metadata=self._lease.metadata, spec=_spec(record))
        self._lease = self._call(functools.partial(self._api.replace_namespaced_lease, self.name),
                                 self.namespace, body, timeout)

    @staticmethod
    def _call(method, namespace: str, body: client.V1Lease, timeout: float) -> client.V1Lease:
        try:
            return method(namespace, body, _request_timeout=_timeout(timeout))
        except Exception as exc:  # noqa: BLE001 - sorted by classify
            raise classify(exc) from exc


class LeaseWatch:
    """Calls `on_change()` after each list of the Lease and on each change of it."""

    def __init__(self, cluster: Cluster, *, namespace: str, name: str, on_change: Callable[[], None],
                 watch_timeout: int = 300) -> None:
        self._loop = ListWatch(
            what=f"lease {namespace}/{name}",
            list_call=functools.partial(cluster.coordination().list_namespaced_lease, namespace,
                                        field_selector=f"metadata.name={name}"),
            on_list=lambda items, rv: on_change(),
            on_change=lambda kind, item: on_change(),
            watch_timeout=watch_timeout,
        )

    def run(self, stop: threading.Event | None = None, iterations: int | None = None) -> None:
        self._loop.run(stop, iterations)

    def stop(self) -> None:
        self._loop.stop()


def _timeout(seconds: float) -> tuple[float, float]:
    """(connect, read) timeouts for one call that must end within `seconds`."""
    seconds = max(0.1, seconds)
    return min(CONNECT_TIMEOUT, seconds), seconds


def _record(spec: client.V1LeaseSpec | None) -> LeaseRecord:
    if spec is None:
        return LeaseRecord()
    return LeaseRecord(holder=spec.holder_identity or "", lease_duration=spec.lease_duration_seconds or 0,
                       acquire_time=spec.acquire_time, renew_time=spec.renew_time,
                       transitions=spec.lease_transitions or 0)


def _spec(record: LeaseRecord) -> client.V1LeaseSpec:
    return client.V1LeaseSpec(holder_identity=record.holder, lease_duration_seconds=record.lease_duration,
                              acquire_time=record.acquire_time, renew_time=record.renew_time,
                              lease_transitions=record.transitions)
