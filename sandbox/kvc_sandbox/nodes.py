"""Node objects, where a new pod goes (the scheduler's part), and what Kubernetes' node lifecycle
controller does when a node stops reporting.

- `node_object`: a `v1 Node` as a kubelet registers it: `spec.podCIDR(s)`, `status.addresses`
  (InternalIP per family, Hostname), the Ready condition, `nodeInfo`.
- `schedule(store, spec)`: `spec.nodeName` when set; else a `nodeSelector` on `kubernetes.io/hostname`;
  else the schedulable node (Ready, no NoSchedule taint) with the fewest pods that have not ended, the
  first in name order on a tie. None: no node fits (the pod stays Pending, PodScheduled False).
- `default_tolerations(spec)`: what the DefaultTolerationSeconds admission plugin adds: tolerate
  `not-ready` and `unreachable` (NoExecute) for 300 s, unless the pod has its own toleration of them.
- `NodeLifecycle`: `cut(name)` makes a node's kubelet stop reporting (kubelet.py then neither publishes
  its pods nor finishes their deletion, and refuses execs into them); after `grace` seconds
  (kube-controller-manager's node-monitor-grace-period, 40 s by default) the node's Ready turns Unknown
  (`kubectl get nodes`: NotReady), its pods' Ready turns False, and it gets the taints
  `node.kubernetes.io/unreachable` NoSchedule and NoExecute. Each of its pods is then deleted (evicted,
  with its grace period) once the NoExecute taint is older than the pod's toleration of it
  (`tolerationSeconds`; a pod without a matching toleration goes at once, one without a limit never).
  `restore(name)`: the kubelet reports again: Ready, no taints, it republishes its pods and finishes the
  deletions it could not do while cut off.

Concurrency contract: event loop only. `NodeLifecycle.run` is one task that looks every `tick` seconds
(level-based: it compares each node's state with how long its kubelet has been silent); `cut` and
`restore` are plain calls on the loop.
"""

from __future__ import annotations

import asyncio
import platform
import time
import uuid
from typing import Protocol

from loguru import logger

from .cluster import Node
from .resources import NODES, PODS, VERSION
from .store import Store, now_rfc3339

HOSTNAME_LABEL = "kubernetes.io/hostname"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
DEFAULT_TOLERATION_SECONDS = 300
#: kube-controller-manager's --node-monitor-grace-period
DEFAULT_GRACE = 40.0
#: phases of pods that no longer count on their node
_ENDED = ("Succeeded", "Failed")


def node_object(node: Node, runtime_name: str) -> dict:
    internal = [{"type": "InternalIP", "address": a} for a in node.addresses]
    spec = {"podCIDR": node.pod_cidrs[0], "podCIDRs": list(node.pod_cidrs)} if node.pod_cidrs else {}
    ident = uuid.uuid5(uuid.NAMESPACE_DNS, node.name)
    return {
        "metadata": {"name": node.name, "labels": {HOSTNAME_LABEL: node.name, "kubernetes.io/os": "linux",
                                                   "kubernetes.io/arch": platform.machine()}},
        "spec": spec,
        "status": {
            "conditions": [_ready_condition(True)],
            "addresses": [*internal, {"type": "Hostname", "address": node.name}],
            # every field the API marks required (the official client refuses a Node without them)
            "nodeInfo": {"machineID": ident.hex, "systemUUID": str(ident), "bootID": str(uuid.uuid4()),
                         "kubeletVersion": VERSION["gitVersion"], "kubeProxyVersion": "",
                         "containerRuntimeVersion": f"{runtime_name}://kube-vxlan-sandbox",
                         "osImage": "kube-vxlan-sandbox", "kernelVersion": platform.release(),
                         "operatingSystem": "linux", "architecture": platform.machine()},
        },
    }


def _ready_condition(ready: bool) -> dict:
    now = now_rfc3339()
    if ready:
        return {"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}
    return {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": now, "lastTransitionTime": now}


def is_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def internal_ips(node: dict | None) -> list[str]:
    return [a["address"] for a in ((node or {}).get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP"]


def _schedulable(node: dict) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    return is_ready(node) and not any(t.get("effect") == "NoSchedule" for t in taints)


def schedule(store: Store, spec: dict) -> str | None:
    """The node a new pod goes to (see the module docstring)."""
    if spec.get("nodeName"):
        return spec["nodeName"]
    wanted = (spec.get("nodeSelector") or {}).get(HOSTNAME_LABEL)
    nodes = sorted(n["metadata"]["name"] for n in store.list(NODES)
                   if _schedulable(n) and wanted in (None, n["metadata"]["name"]))
    if not nodes:
        return None
    load = dict.fromkeys(nodes, 0)
    for pod in store.list(PODS):
        node = (pod.get("spec") or {}).get("nodeName")
        if node in load and (pod.get("status") or {}).get("phase") not in _ENDED:
            load[node] += 1
    return min(nodes, key=lambda n: load[n])


def default_tolerations(spec: dict) -> None:
    tolerations = spec.setdefault("tolerations", [])
    for key in (NOT_READY, UNREACHABLE):
        if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})


def toleration_seconds(spec: dict, key: str) -> float | None:
    """How long the pod stays on a node with the NoExecute taint `key`: 0 without a toleration of it, None
    for ever (a toleration without tolerationSeconds)."""
    for t in spec.get("tolerations") or []:
        if t.get("effect") not in ("NoExecute", None, ""):
            continue
        if t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"):
            seconds = t.get("tolerationSeconds")
            return None if seconds is None else max(0.0, float(seconds))
    return 0.0


class NodeKubelets(Protocol):
    """What the node lifecycle needs of the kubelet (kubelet.Kubelet, which imports this module)."""

    def cut(self, node: str) -> None: ...

    def restore(self, node: str) -> None: ...

    def delete(self, namespace: str, name: str, grace_seconds: float | None = None) -> dict: ...


class NodeLifecycle:
    """See the module docstring."""

    def __init__(self, store: Store, kubelet: NodeKubelets, *, grace: float = DEFAULT_GRACE, tick: float = 0.2,
                 clock=time.monotonic) -> None:
        self._store, self._kubelet = store, kubelet
        self.grace, self._tick, self._clock = grace, tick, clock
        self._silent_since: dict[str, float] = {}  # node → when its kubelet stopped reporting
        self._tainted_at: dict[str, float] = {}  # node → when it got the NoExecute taint

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self._tick)

    def cut(self, name: str) -> None:
        self._store.require(NODES, "", name)
        if name not in self._silent_since:
            self._silent_since[name] = self._clock()
            self._kubelet.cut(name)
            logger.info("sandbox node {}: cut off, its kubelet stopped reporting", name)

    def restore(self, name: str) -> None:
        self._store.require(NODES, "", name)
        if self._silent_since.pop(name, None) is None:
            return
        self._tainted_at.pop(name, None)

        def ready(node: dict) -> None:
            node["status"]["conditions"] = [_ready_condition(True)]
            node["spec"].pop("taints", None)

        self._store.update(NODES, "", name, ready)
        logger.info("sandbox node {}: back, Ready", name)
        self._kubelet.restore(name)

    def check(self) -> None:
        now = self._clock()
        for name, since in self._silent_since.items():
            if name not in self._tainted_at and now - since >= self.grace:
                self._not_ready(name)
                self._tainted_at[name] = now
        for name, tainted in self._tainted_at.items():
            for pod in self._store.list(PODS):
                m = pod["metadata"]
                if (pod.get("spec") or {}).get("nodeName") != name or m.get("deletionTimestamp"):
                    continue
                seconds = toleration_seconds(pod["spec"], UNREACHABLE)
                if seconds is not None and now - tainted >= seconds:
                    logger.info("sandbox node {}: evicting pod {}/{} (tolerated the unreachable taint {} s)", name,
                                m.get("namespace"), m["name"], seconds)
                    self._kubelet.delete(m.get("namespace", ""), m["name"])

    def _not_ready(self, name: str) -> None:
        added = now_rfc3339()

        def unknown(node: dict) -> None:
            node["status"]["conditions"] = [_ready_condition(False)]
            node["spec"]["taints"] = [{"key": UNREACHABLE, "effect": effect, "timeAdded": added}
                                      for effect in ("NoSchedule", "NoExecute")]

        self._store.update(NODES, "", name, unknown)
        logger.info("sandbox node {}: NotReady (silent for {} s), tainted {}", name, self.grace, UNREACHABLE)

        def not_ready(pod: dict) -> None:
            for condition in (pod.get("status") or {}).get("conditions") or []:
                if condition.get("type") in ("Ready", "ContainersReady") and condition.get("status") != "False":
                    condition.update(status="False", lastTransitionTime=added)

        for pod in self._store.list(PODS):
            if (pod.get("spec") or {}).get("nodeName") == name:
                self._store.update(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], not_ready)
