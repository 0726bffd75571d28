"""Pods as domain values, and the stream of pod events the controller runs on.

`to_pod` turns a client `V1Pod` into an immutable `model.Pod`; no client model leaves `k8s/`.
`PodStream` lists the pods matching a label selector, then watches them (the loop is `ListWatch`), and
hands each outcome to `on_event` as a domain event:

- `PodsListed(pods, resource_version)` after every (re)list: the complete set of matching pods. Pods
  the consumer knows that are not in it are gone (they vanished while nobody watched).
- `PodChanged(pod)` for ADDED and MODIFIED, `PodDeleted(pod)` for DELETED.

Concurrency contract: `run()` blocks its thread and calls `on_event` on it, in the API server's order;
`on_event` should only pass the event on (an actor `tell`). `stop()` may be called from any thread and
ends the current watch at once. The events are frozen values, safe to share between threads.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from kubernetes import client

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.listwatch import ListWatch
from kube_vxlan_controller.model import Pod

#: the seed's container names.
INIT_AGENT_CONTAINER = "vxlan-controller-agent-init"
AGENT_CONTAINER = "vxlan-controller-agent"


@dataclass(frozen=True, slots=True)
class PodsListed:
    """Every pod matching the selector, as of `resource_version`."""

    pods: tuple[Pod, ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class PodChanged:
    """A pod was added or modified."""

    pod: Pod


@dataclass(frozen=True, slots=True)
class PodDeleted:
    """A pod is gone from the API (its last state)."""

    pod: Pod


PodEvent = PodsListed | PodChanged | PodDeleted


def to_pod(
    v1: client.V1Pod,
    *,
    init_container: str = INIT_AGENT_CONTAINER,
    agent_container: str = AGENT_CONTAINER,
) -> Pod:
    """The domain value of a client pod; the two agent containers are looked up by name."""
    meta = v1.metadata or client.V1ObjectMeta()
    status = v1.status or client.V1PodStatus()
    init = _status_of(status.init_container_statuses, init_container)
    agent = _status_of(status.container_statuses, agent_container)
    return Pod(
        uid=meta.uid or "",
        namespace=meta.namespace or "",
        name=meta.name or "",
        ip=status.pod_ip or None,
        resource_version=meta.resource_version or "",
        labels=_frozen(meta.labels),
        annotations=_frozen(meta.annotations),
        init_agent_running=_running(init),
        init_agent_id=(init.container_id or f"restarts:{init.restart_count or 0}") if init is not None else "",
        agent_running=_running(agent),
        agent_restarts=(agent.restart_count or 0) if agent is not None else 0,
        deleting=meta.deletion_timestamp is not None,
        phase=status.phase or "",
    )


class PodStream:
    """List+watch of the pods matching `label_selector` (in `namespace`, or in all namespaces)."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        label_selector: str,
        on_event: Callable[[PodEvent], None],
        namespace: str | None = None,
        init_container: str = INIT_AGENT_CONTAINER,
        agent_container: str = AGENT_CONTAINER,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        core = cluster.core()
        if namespace is None:
            list_call = functools.partial(core.list_pod_for_all_namespaces, label_selector=label_selector)
        else:
            list_call = functools.partial(core.list_namespaced_pod, namespace, label_selector=label_selector)
        self._on_event = on_event
        self._convert = functools.partial(
            to_pod, init_container=init_container, agent_container=agent_container
        )
        self._loop = ListWatch(
            what=f"pods (selector: {label_selector})",
            list_call=list_call,
            item_type="V1Pod",
            api_client=cluster.api_client,
            on_list=self._listed,
            on_change=self._changed,
            backoff=backoff,
            watch_timeout=watch_timeout,
            observer=observer,
        )

    @property
    def resource_version(self) -> str | None:
        return self._loop.resource_version

    def run(self, stop: threading.Event | None = None, iterations: int | None = None) -> None:
        """Block listing and watching until `stop` is set or `stop()` is called (see `ListWatch.run`)."""
        self._loop.run(stop, iterations)

    def stop(self) -> None:
        """End `run()`, and the current watch at once; callable from any thread."""
        self._loop.stop()

    def _listed(self, items: list[client.V1Pod], resource_version: str) -> None:
        self._on_event(PodsListed(tuple(self._convert(item) for item in items), resource_version))

    def _changed(self, kind: str, item: client.V1Pod) -> None:
        pod = self._convert(item)
        self._on_event(PodDeleted(pod) if kind == "DELETED" else PodChanged(pod))


def _status_of(statuses: list[Any] | None, name: str) -> Any:
    for status in statuses or ():
        if status.name == name:
            return status
    return None


def _running(status: Any) -> bool:
    return status is not None and status.state is not None and status.state.running is not None


def _frozen(values: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))
