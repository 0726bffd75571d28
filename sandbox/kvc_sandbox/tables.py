"""`meta.k8s.io/v1` Table rendering, what kubectl asks for (`Accept: application/json;as=Table;…`).

Pure functions; safe from any thread. Pods follow the API server's own printer (READY, STATUS as
kubectl shows it — `Init:0/1`, `PodInitializing`, `Running`, `Completed`, `Terminating` —, RESTARTS), with IP
as a priority-0 column so plain `kubectl get pods` shows it. Deployments show READY/UP-TO-DATE/AVAILABLE,
nodes STATUS/ROLES/VERSION (and INTERNAL-IP… with `-o wide`); every other kind NAME and AGE.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .resources import Resource


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    seconds = max(0, int((datetime.now(timezone.utc) - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _column(name: str, type_: str = "string", fmt: str = "", description: str = "", priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


_NAME = _column("Name", fmt="name", description="Name must be unique within a namespace.")
_AGE = _column("Age", description="CreationTimestamp is a timestamp representing the server time when this "
                                  "object was created.")

POD_COLUMNS = [
    _NAME,
    _column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", description="The aggregate status of the containers in this pod."),
    _column("Restarts", description="The number of times the containers in this pod have been restarted "
                                    "and when the last container in this pod has restarted."),
    _AGE,
    _column("IP", description="IP address allocated to the pod. Routable at least within the cluster."),
    _column("Node", description="NodeName is a request to schedule this pod onto a specific node.", priority=1),
    _column("Nominated Node", priority=1),
    _column("Readiness Gates", priority=1),
]

DEPLOYMENT_COLUMNS = [
    _NAME,
    _column("Ready", description="Number of the pod with ready state"),
    _column("Up-to-date", type_="integer", description="Total number of non-terminated pods targeted by "
                                                        "this deployment that have the desired template spec."),
    _column("Available", type_="integer", description="Total number of available pods (ready for at least "
                                                      "minReadySeconds) targeted by this deployment."),
    _AGE,
    _column("Containers", priority=1),
    _column("Images", priority=1),
    _column("Selector", priority=1),
]

NODE_COLUMNS = [
    _NAME,
    _column("Status", description="The status of the node"),
    _column("Roles", description="The roles of the node"),
    _AGE,
    _column("Version", description="Kubelet Version reported by the node."),
    _column("Internal-IP", description="List of internal IPs.", priority=1),
    _column("External-IP", description="List of external IPs.", priority=1),
    _column("OS-Image", description="OS Image reported by the node.", priority=1),
    _column("Kernel-Version", description="Kernel Version reported by the node.", priority=1),
    _column("Container-Runtime", description="Container Runtime Version reported by the node.", priority=1),
]

DEFAULT_COLUMNS = [_NAME, _AGE]


def pod_status_reason(pod: dict) -> tuple[str, int, int, int]:
    """(STATUS, ready containers, containers, restarts) the way `kubectl get pods` computes them."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    restarts = 0
    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        state = container.get("state") or {}
        restarts += container.get("restartCount", 0)
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    ready = 0
    containers = status.get("containerStatuses") or []
    if not initializing:
        restarts = 0
        has_running = False
        for container in reversed(containers):
            state = container.get("state") or {}
            restarts += container.get("restartCount", 0)
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = f"ExitCode:{terminated.get('exitCode')}"
            elif container.get("ready") and state.get("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    total = len(spec.get("containers") or [])
    return reason, ready, total, restarts


def _pod_cells(pod: dict) -> list:
    reason, ready, total, restarts = pod_status_reason(pod)
    status = pod.get("status") or {}
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    # as kube-apiserver's printer: the gates whose condition is True, of all gates
    true = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    passed = sum(1 for gate in gates if gate.get("conditionType") in true)
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, str(restarts),
            _age(pod["metadata"].get("creationTimestamp")), status.get("podIP") or "<none>",
            (pod.get("spec") or {}).get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            f"{passed}/{len(gates)}" if gates else "<none>"]


def _deployment_cells(deploy: dict) -> list:
    spec, status = deploy.get("spec") or {}, deploy.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return [deploy["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            _age(deploy["metadata"].get("creationTimestamp")),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            ",".join(f"{k}={v}" for k, v in labels.items())]


def _node_cells(node: dict) -> list:
    """As kube-apiserver's printer: Ready/NotReady (Unknown is NotReady too), the first address of each
    type (one column each), nodeInfo."""
    status = node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    state = ("Ready" if ready else "NotReady") + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable")
                                                  else "")
    first = {}
    for address in status.get("addresses") or []:
        first.setdefault(address.get("type"), address.get("address"))
    info = status.get("nodeInfo") or {}
    return [node["metadata"]["name"], state, "<none>", _age(node["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), first.get("InternalIP", "<none>"), first.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def _row(resource: Resource, obj: dict, include: str) -> dict:
    if resource.kind == "Pod" and not resource.group:
        cells = _pod_cells(obj)
    elif resource.kind == "Node":
        cells = _node_cells(obj)
    elif resource.kind == "Deployment":
        cells = _deployment_cells(obj)
    else:
        cells = [obj["metadata"]["name"], _age(obj["metadata"].get("creationTimestamp"))]
    if include == "None":
        embedded = None
    elif include == "Object":
        embedded = obj
    else:
        embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return {"cells": cells, "object": embedded}


def columns(resource: Resource) -> list[dict]:
    if resource.kind == "Pod" and not resource.group:
        return POD_COLUMNS
    if resource.kind == "Deployment":
        return DEPLOYMENT_COLUMNS
    if resource.kind == "Node":
        return NODE_COLUMNS
    return DEFAULT_COLUMNS


def table(resource: Resource, objects: list[dict], resource_version: str, include: str = "Metadata",
          with_columns: bool = True) -> dict:
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns(resource) if with_columns else [],
            "rows": [_row(resource, obj, include) for obj in objects]}
