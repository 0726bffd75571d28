"""The network ConfigMap: read it once, or follow it.

`read_configmap` returns the ConfigMap's `data` as a read-only mapping; a missing ConfigMap is an empty
mapping (the seed works without one: networks then need all options in the pod annotation), logged
once per ConfigMap until it appears again. `ConfigMapStream` follows one ConfigMap with the shared
list+watch loop and calls `on_change(data)` with its whole data whenever that changes: once after the
first list, then on every change (a deleted ConfigMap gives an empty mapping).

Concurrency contract: `read_configmap` may be called from any thread (one blocking REST call, bounded
by its request timeout). `ConfigMapStream.run()` blocks its thread and calls `on_change` on it;
`stop()` may be called from any thread. The mappings handed out are read-only copies.
"""

from __future__ import annotations

import functools
import threading
from types import MappingProxyType
from typing import Any, Callable, Mapping

from kubernetes.client.exceptions import ApiException
from loguru import logger

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.errors import classify
from kube_vxlan_controller.k8s.listwatch import LIST_TIMEOUT, ListWatch

#: the seed's ConfigMap name.
NETWORK_CONFIGMAP = "kube-vxlan-controller"

_EMPTY: Mapping[str, str] = MappingProxyType({})
_missing_logged: set[str] = set()
_missing_lock = threading.Lock()


def read_configmap(cluster: Cluster, name: str = NETWORK_CONFIGMAP, namespace: str | None = None) -> Mapping[str, str]:
    """The data of ConfigMap `namespace/name` (default namespace: the controller's); {} if missing.

    Raises `K8sError` (`ApiUnavailable`, …) for failures other than "not found".
    """
    namespace = namespace or cluster.namespace
    key = f"{namespace}/{name}"
    try:
        configmap = cluster.core().read_namespaced_config_map(name, namespace, _request_timeout=LIST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            _log_missing(key)
            return _EMPTY
        raise classify(exc) from exc
    except Exception as exc:  # noqa: BLE001 - urllib3 and socket errors are sorted by classify
        raise classify(exc) from exc
    _found(key)
    return _data(configmap)


class ConfigMapStream:
    """Follows one ConfigMap and reports its data whenever it changes."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        on_change: Callable[[Mapping[str, str]], None],
        name: str = NETWORK_CONFIGMAP,
        namespace: str | None = None,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace or cluster.namespace
        self._on_change = on_change
        self._last: Mapping[str, str] | None = None
        self._loop = ListWatch(
            what=f"configmap {self.namespace}/{name}",
            list_call=functools.partial(
                cluster.core().list_namespaced_config_map,
                self.namespace,
                field_selector=f"metadata.name={name}",
            ),
            on_list=self._listed,
            on_change=self._changed,
            backoff=backoff,
            watch_timeout=watch_timeout,
            observer=observer,
        )

    def run(self, stop: threading.Event | None = None, iterations: int | None = None) -> None:
        """Block following the ConfigMap until `stop` is set or `stop()` is called."""
        self._loop.run(stop, iterations)

    def stop(self) -> None:
        """End `run()`, and the current watch at once; callable from any thread."""
        self._loop.stop()

    def _listed(self, items: list[dict], resource_version: str) -> None:
        # The server may ignore the field selector: match the name here too.
        mine = [item for item in items if _name(item) == self.name]
        if mine:
            _found(f"{self.namespace}/{self.name}")
        else:
            _log_missing(f"{self.namespace}/{self.name}")
        self._publish(json_data(mine[0]) if mine else _EMPTY)

    def _changed(self, kind: str, item: dict) -> None:
        if _name(item) != self.name:
            return
        self._publish(_EMPTY if kind == "DELETED" else json_data(item))

    def _publish(self, data: Mapping[str, str]) -> None:
        if self._last is not None and dict(data) == dict(self._last):
            return
        self._last = data
        logger.info("ConfigMap {}/{}: networks {}", self.namespace, self.name, sorted(data) or "none")
        self._on_change(data)


def _data(configmap: Any) -> Mapping[str, str]:
    return MappingProxyType(dict(configmap.data or {}))


def _name(item: dict) -> str | None:
    meta = item.get("metadata")
    return meta.get("name") if isinstance(meta, dict) else None


def json_data(item: dict) -> Mapping[str, str]:
    """A ConfigMap's `data` as the API (or a manifest) wrote it; values that are not strings are not options."""
    data = item.get("data")
    return MappingProxyType({str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {})


def _found(key: str) -> None:
    with _missing_lock:
        _missing_logged.discard(key)


def _log_missing(key: str) -> None:
    with _missing_lock:
        if key in _missing_logged:
            return
        _missing_logged.add(key)
    logger.info("ConfigMap {} not found: network options come from pod annotations only", key)
