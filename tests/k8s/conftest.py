"""Fixtures for k8s/ against the real sandbox: a Cluster, pods made with the official client, streams run
in threads and stopped at teardown, and a recorder to wait for what they deliver (with deadlines)."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
from kubernetes import client
from loguru import logger

from kube_vxlan_controller.k8s import client as k8s_client
from kube_vxlan_controller.k8s.pods import AGENT_CONTAINER, INIT_AGENT_CONTAINER
from polling import wait_for


class Recorder:
    """Collects what a stream delivers, from the stream's thread; tests wait on it with deadlines."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def wait(self, predicate: Callable[[Any], bool], timeout: float = 10.0, after: int = 0, what: str = "") -> Any:
        """The first item at index ≥ `after` satisfying `predicate`."""
        def find():
            for item in self.items[after:]:
                if predicate(item):
                    return (item,)  # truthy even when the item is not (an empty mapping)
            return None

        return wait_for(find, timeout, what or "a matching item")[0]


class Runner:
    """Runs streams in threads; stops them and checks they ended at teardown."""

    def __init__(self) -> None:
        self._running: list[tuple[Any, threading.Thread]] = []

    def start(self, stream: Any) -> Any:
        thread = threading.Thread(target=stream.run, name=type(stream).__name__, daemon=True)
        thread.start()
        self._running.append((stream, thread))
        return stream

    def stop_all(self) -> None:
        for stream, thread in self._running:
            stream.stop()
        for stream, thread in self._running:
            thread.join(10)
            assert not thread.is_alive(), f"{type(stream).__name__} did not stop"


@pytest.fixture
def cluster(sandbox):
    cluster = k8s_client.connect(str(sandbox.kubeconfig), namespace="kube-system")
    yield cluster
    cluster.close()


@pytest.fixture
def core(cluster) -> client.CoreV1Api:
    """The generated core/v1 API on the cluster's client, for what the tests do beyond the controller's calls."""
    return client.CoreV1Api(cluster.api_client)


@pytest.fixture
def runner():
    runner = Runner()
    yield runner
    runner.stop_all()


@pytest.fixture
def logs():
    """Every loguru message logged during the test."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="DEBUG")
    yield lines
    logger.remove(sink)


def pod_body(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "x"}, "annotations": annotations or {}},
        "spec": {
            "initContainers": [{"name": INIT_AGENT_CONTAINER, "image": "agent"}],
            "containers": [{"name": AGENT_CONTAINER, "image": "agent"}],
        },
    }


@pytest.fixture
def make_pod(core):
    def make(name: str, labels: dict[str, str] | None = None, namespace: str = "default", **kwargs) -> Any:
        return core.create_namespaced_pod(namespace, pod_body(name, labels, **kwargs))

    return make


@pytest.fixture
def running_pod(sandbox, make_pod):
    """Create a pod and wait until its init agent runs (setup can happen); returns the V1Pod."""

    def make(name: str, labels: dict[str, str] | None = None, namespace: str = "default") -> Any:
        created = make_pod(name, labels, namespace)
        sandbox.wait_pod(namespace, name, lambda p: p is not None and any(
            s.get("name") == INIT_AGENT_CONTAINER and "running" in (s.get("state") or {})
            for s in (p.get("status") or {}).get("initContainerStatuses") or ()))
        return created

    return make
