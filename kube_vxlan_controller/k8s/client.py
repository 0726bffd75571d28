"""The connection to one cluster: configuration, API clients and the controller's own namespace.

Concurrency contract:
- `Cluster.core()` is one `CoreV1` (corev1.py: the core/v1 calls the controller makes, without the
  generated `CoreV1Api`) on one shared `ApiClient`, for plain REST calls (list, watch, ConfigMaps,
  Events, pod status), and `Cluster.coordination()` one `CoordinationV1Api` on the same client (the
  election's Lease). urllib3's pool is thread-safe, so any thread may use them at the same time.
- Exec websockets are opened by websockets.py, from the shared client's requests (building one only
  reads the client), not by `kubernetes.stream.stream()`, which swaps `api_client.call_api` for the
  length of the call and so needs a client per thread.
- Loading the configuration happens once, in `connect`, before any thread uses it; afterwards the
  `Configuration` is only read (the in-cluster loader refreshes the token under its own lock).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes import client, config
from loguru import logger

from kube_vxlan_controller.k8s.corev1 import CoreV1
from kube_vxlan_controller.k8s.errors import K8sError, one_line

#: Where Kubernetes mounts the namespace of a pod's service account.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: The seed's fallback when the controller does not run in a pod.
DEFAULT_NAMESPACE = "kube-system"


def own_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace this process runs in: the service account's when mounted, else `kube-system`."""
    try:
        text = path.read_text().strip()
    except OSError:
        return DEFAULT_NAMESPACE
    return text or DEFAULT_NAMESPACE


#: set in every pod (by the kubelet): client-go's sign that it runs in a cluster
IN_POD = "KUBERNETES_SERVICE_HOST"


class Cluster:
    """One cluster as the controller sees it; create it with `connect`."""

    def __init__(self, configuration: client.Configuration, namespace: str) -> None:
        self.configuration = configuration
        #: the namespace the controller runs in (its ConfigMap and Lease live there).
        self.namespace = namespace
        #: the shared `ApiClient` (for tests and tools that need a generated API class on it)
        self.api_client = client.ApiClient(configuration)
        self._core = CoreV1(self.api_client)
        self._coordination = client.CoordinationV1Api(self.api_client)

    @property
    def host(self) -> str:
        return self.configuration.host

    def core(self) -> CoreV1:
        """The shared core/v1 API for REST calls; safe from any thread."""
        return self._core

    def coordination(self) -> client.CoordinationV1Api:
        """The shared coordination.k8s.io/v1 API (Leases); safe from any thread."""
        return self._coordination

    def close(self) -> None:
        """Release the shared client's connections."""
        self.api_client.close()

    def __repr__(self) -> str:
        return f"Cluster(host={self.host!r}, namespace={self.namespace!r})"


def connect(kubeconfig: str | None = None, *, namespace: str | None = None, context: str | None = None) -> Cluster:
    """Configure a client, finding the configuration as kubectl does: the file `kubeconfig` when given;
    else, in a pod (`KUBERNETES_SERVICE_HOST` set), the pod's service account; else `$KUBECONFIG` (files
    separated by ':', merged as kubectl merges them), else `~/.kube/config`.

    `namespace` is the controller's own namespace; by default the service account's (when mounted),
    else `kube-system`. Raises `K8sError` when the configuration cannot be loaded, with a message that
    says what is wrong and what to do. Opens no connection.
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get(IN_POD):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise K8sError(f"cannot load the pod's service account: {exc}; the pod needs its service account "
                           "token mounted (automountServiceAccountToken), or give --kubeconfig PATH") from exc
    else:
        _load_kubeconfig(configuration, kubeconfig, context)
    cluster = Cluster(configuration, namespace or own_namespace())
    logger.info("Kubernetes API at {} (controller namespace {})", cluster.host, cluster.namespace)
    return cluster


def _load_kubeconfig(configuration: client.Configuration, kubeconfig: str | None, context: str | None) -> None:
    if kubeconfig is not None:
        where, paths = f"kubeconfig {kubeconfig}", [kubeconfig]
        missing = "no such file: give the path of a kubeconfig file (--kubeconfig, KVC_KUBECONFIG)"
    elif os.environ.get("KUBECONFIG"):
        where, paths = f"KUBECONFIG={os.environ['KUBECONFIG']}", os.environ["KUBECONFIG"].split(os.pathsep)
        missing = "no such file: set KUBECONFIG to a kubeconfig file, or give --kubeconfig PATH"
    else:
        default = str(Path.home() / ".kube" / "config")
        where, paths = f"kubeconfig {default}", [default]
        missing = (f"no such file, KUBECONFIG is unset and this is not a pod ({IN_POD} is unset): give "
                   "--kubeconfig PATH or set KUBECONFIG")
    existing = [path for path in paths if path and Path(path).exists()]
    if not existing:
        raise K8sError(f"{where}: {missing}")
    try:
        config.load_kube_config(config_file=os.pathsep.join(existing), context=context,
                                client_configuration=configuration, persist_config=False)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or one_line(exc)
        raise K8sError(f"{where} is not valid YAML ({at}{problem}); fix the file") from exc
    except (config.ConfigException, OSError, ValueError) as exc:
        raise K8sError(f"cannot load the {where}: {one_line(exc)}; check it with `kubectl config view "
                       f"--kubeconfig {existing[0]}`") from exc
