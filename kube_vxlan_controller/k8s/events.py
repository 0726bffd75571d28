"""Kubernetes Events on pods, so that `kubectl describe pod` shows what the controller found wrong.

One core/v1 Event per call (involvedObject: the pod with its uid; source and reportingComponent
`kube-vxlan-controller`; first and last timestamp now; count 1). No aggregation: callers report a
problem once per change, not at every retry.

Concurrency contract: `record_event` may be called from any thread; it blocks for one REST call
(bounded by its request timeout) and never raises: an Event is a courtesy, and failing to record one
must not fail the work that reported it (a warning is logged instead). A denial (RBAC without `create`
on `events`) is logged once, not for every Event, until recording works again.
"""

from __future__ import annotations

import datetime
import socket
import threading

from kubernetes import client
from loguru import logger

from kube_vxlan_controller.k8s.client import Cluster
from kube_vxlan_controller.k8s.errors import Forbidden, classify
from kube_vxlan_controller.model import Pod

COMPONENT = "kube-vxlan-controller"
#: (connect, read) seconds.
REQUEST_TIMEOUT = (5.0, 15.0)
#: the API server refuses longer messages.
MAX_MESSAGE = 1024

_HOST = socket.gethostname()
_denied_lock = threading.Lock()
_denied = False


def record_event(cluster: Cluster, pod: Pod, *, reason: str, message: str, type: str = "Warning") -> None:
    """Create an Event about `pod`; log a warning instead of raising when that fails."""
    now = datetime.datetime.now(datetime.timezone.utc)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{pod.name}.", namespace=pod.namespace),
        involved_object=client.V1ObjectReference(
            api_version="v1",
            kind="Pod",
            namespace=pod.namespace,
            name=pod.name,
            uid=pod.uid,
            resource_version=pod.resource_version or None,
        ),
        reason=reason,
        message=message[:MAX_MESSAGE],
        type=type,
        source=client.V1EventSource(component=COMPONENT, host=_HOST),
        reporting_component=COMPONENT,
        reporting_instance=_HOST,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    global _denied
    try:
        cluster.core().create_namespaced_event(pod.namespace, event, _request_timeout=REQUEST_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - never raises, by contract
        error = classify(exc)
        if isinstance(error, Forbidden):
            with _denied_lock:
                first, _denied = not _denied, True
            if first:
                logger.error("cannot record Events (the controller still works; it logs instead): {}", error)
            return
        logger.warning("{}: could not record event {} ({}): {}", pod.key, reason, message[:200], error)
    else:
        with _denied_lock:
            _denied = False
