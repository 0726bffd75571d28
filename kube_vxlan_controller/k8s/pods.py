"""Pods as domain values, and the stream of pod events the controller runs on.

`pod_from_json` turns a pod as the API server writes it (parsed JSON) into an immutable `model.Pod` in
one step: no client model is built for it, and none leaves `k8s/`. `PodStream` lists the pods matching
a label selector, then watches them (the loop is `ListWatch`), and hands each outcome to `on_event` as
a domain event (`messages.py`):

- `PodsListed(pods, resource_version)` after every (re)list: the complete set of matching pods. Pods
  the consumer knows that are not in it are gone (they vanished while nobody watched).
- `PodChanged(pod)` for ADDED and MODIFIED, `PodDeleted(pod)` for DELETED.

Concurrency contract: `run()` blocks its thread and calls `on_event` on it, in the API server's order;
`on_event` should only pass the event on (an actor `tell`). `stop()` may be called from any thread and
ends the current watch at once. The events are frozen values, safe to share between threads.
"""

from __future__ import annotations

import functools
import json
import threading
from types import MappingProxyType
from typing import Any, Callable, Mapping

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.errors import classify
from kube_vxlan_controller.k8s.listwatch import LIST_TIMEOUT, ListWatch
from kube_vxlan_controller.messages import PodChanged, PodDeleted, PodEvent, PodsListed
from kube_vxlan_controller.model import AgentSpec, Condition, Pod
from kube_vxlan_controller.wired import CONDITION_TYPE

__all__ = ["AGENT_CONTAINER", "INIT_AGENT_CONTAINER", "PodChanged", "PodDeleted", "PodStream", "PodsListed",
           "list_pods_json", "pod_from_json", "read_pod_json"]

#: what grants NET_ADMIN in a container's `securityContext.capabilities.add` (runtimes take "ALL" too)
NET_ADMIN = ("NET_ADMIN", "CAP_NET_ADMIN", "ALL")
#: the seed's container names.
INIT_AGENT_CONTAINER = "vxlan-controller-agent-init"
AGENT_CONTAINER = "vxlan-controller-agent"


def pod_from_json(
    raw: Mapping[str, Any],
    *,
    init_container: str = INIT_AGENT_CONTAINER,
    agent_container: str = AGENT_CONTAINER,
) -> Pod:
    """The domain value of a pod as the API writes it (or a manifest's pod template); the two agent
    containers are looked up by name. Missing or oddly typed fields read as absent."""
    meta = _dict(raw.get("metadata"))
    spec = _dict(raw.get("spec"))
    status = _dict(raw.get("status"))
    init = _named(status.get("initContainerStatuses"), init_container)
    agent = _named(status.get("containerStatuses"), agent_container)
    return Pod(
        uid=_str(meta.get("uid")),
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        ip=_str(status.get("podIP")) or None,
        ips=tuple(ip for entry in status.get("podIPs") or () if isinstance(entry, dict) and (ip := _str(entry.get("ip")))),
        resource_version=_str(meta.get("resourceVersion")),
        labels=_frozen(meta.get("labels")),
        annotations=_frozen(meta.get("annotations")),
        init_agent_running=_running(init),
        init_agent_id=(_str(init.get("containerID")) or f"restarts:{_int(init.get('restartCount'))}")
        if init is not None else "",
        agent_running=_running(agent),
        agent_restarts=_int(agent.get("restartCount")) if agent is not None else 0,
        deleting=meta.get("deletionTimestamp") is not None,
        phase=_str(status.get("phase")),
        wired=_condition(status.get("conditions"), CONDITION_TYPE),
        init_agent_spec=_agent_spec(spec.get("initContainers"), init_container),
        agent_spec=_agent_spec(spec.get("containers"), agent_container),
        gated=any(isinstance(gate, dict) and gate.get("conditionType") == CONDITION_TYPE
                  for gate in _list(spec.get("readinessGates"))),
    )


def read_pod_json(cluster: Cluster, namespace: str, name: str) -> dict:
    """One pod as the API writes it (parsed JSON, for `pod_from_json`); raises `K8sError` (`PodGone`: none)."""
    try:
        response = cluster.core().read_namespaced_pod(name, namespace, _preload_content=False,
                                                      _request_timeout=LIST_TIMEOUT)
        return json.loads(response.data)
    except Exception as exc:  # noqa: BLE001 - sorted by classify, the one place that does
        raise classify(exc) from exc


def list_pods_json(cluster: Cluster, label_selector: str, namespace: str | None = None) -> list[dict]:
    """The pods matching `label_selector` (in `namespace`, or all) as the API writes them; raises `K8sError`."""
    core = cluster.core()
    try:
        if namespace is None:
            response = core.list_pod_for_all_namespaces(label_selector=label_selector, _preload_content=False,
                                                        _request_timeout=LIST_TIMEOUT)
        else:
            response = core.list_namespaced_pod(namespace, label_selector=label_selector, _preload_content=False,
                                                _request_timeout=LIST_TIMEOUT)
        return json.loads(response.data).get("items") or []
    except Exception as exc:  # noqa: BLE001 - sorted by classify, the one place that does
        raise classify(exc) from exc


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
            pod_from_json, init_container=init_container, agent_container=agent_container
        )
        self._loop = ListWatch(
            what=f"pods (selector: {label_selector})",
            list_call=list_call,
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

    def _listed(self, items: list[dict], resource_version: str) -> None:
        self._on_event(PodsListed(tuple(self._convert(item) for item in items), resource_version))

    def _changed(self, kind: str, item: dict) -> None:
        pod = self._convert(item)
        self._on_event(PodDeleted(pod) if kind == "DELETED" else PodChanged(pod))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _named(statuses: Any, name: str) -> dict | None:
    """The entry named `name` of a list (container statuses, containers)."""
    for status in _list(statuses):
        if isinstance(status, dict) and status.get("name") == name:
            return status
    return None


def _agent_spec(containers: Any, name: str) -> AgentSpec:
    container = _named(containers, name)
    if container is None:
        return AgentSpec.MISSING
    context = _dict(container.get("securityContext"))
    added = _list(_dict(context.get("capabilities")).get("add"))
    if context.get("privileged") is True or any(str(c).upper() in NET_ADMIN for c in added):
        return AgentSpec.FIT
    return AgentSpec.LACKS_NET_ADMIN


def _condition(conditions: Any, kind: str) -> Condition | None:
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, dict) and condition.get("type") == kind:
            return Condition(condition.get("status") == "True", _str(condition.get("reason")),
                             _str(condition.get("message")))
    return None


def _running(status: dict | None) -> bool:
    return status is not None and isinstance(_dict(status.get("state")).get("running"), dict)


def _frozen(values: Any) -> Mapping[str, str]:
    return MappingProxyType({k: v for k, v in values.items() if isinstance(v, str)} if isinstance(values, dict)
                            else {})
