"""Kubelet emulation: each pod's lifecycle, from network namespace to container statuses to deletion.

Concurrency contract: everything here runs on the sandbox's event loop, except the node network calls
(`add_pod`, `remove_pod`: blocking `ip` commands), which run in the loop's default executor. One asyncio
task per pod drives its start (network, then init containers in order, then main containers); a pod's
state lives in its `PodRuntime` and every change is published by rebuilding the whole `status` from it
(level-based: the published status is always a function of the runtime, never a patch of the last one).

Lifecycle:
- created: Pending, PodScheduled; containers waiting.
- network ready: podIP/podIPs/hostIP; init containers run in order. One named `vxlan-controller-agent-init`
  keeps running until `kill -TERM 1` is executed in it (then Completed, exit 0); the others complete at
  once. Then the main containers run: phase Running, Ready.
- `kill -TERM 1` in a main container: terminated (Completed, exit 0), then running again after
  `restart_delay` with restartCount + 1.
- delete: deletionTimestamp set (MODIFIED); after the grace (at most `max_grace`) the pod's namespace is
  removed with its exec processes (node.py's `NodeNetwork.remove_pod`), then the object is DELETED.
Pod UIDs are fresh uuid4s, so a pod re-created with the same name gets a new namespace.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from loguru import logger

from . import errors
from .resources import PODS
from .store import Event, Store, now_rfc3339

INIT_AGENT = "vxlan-controller-agent-init"
NODE_NAME = "sandbox-node"


def _container_id() -> str:
    return "containerd://" + secrets.token_hex(32)


@dataclass
class Container:
    name: str
    image: str
    init: bool
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "PodInitializing"
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int = 0
    restart_count: int = 0
    container_id: str | None = None
    last_terminated: dict | None = None

    def run(self) -> None:
        self.state, self.started_at, self.finished_at = "running", now_rfc3339(), None
        self.container_id = _container_id()

    def terminate(self, exit_code: int = 0) -> None:
        self.state, self.exit_code, self.finished_at = "terminated", exit_code, now_rfc3339()

    def _terminated(self) -> dict:
        return {"exitCode": self.exit_code, "reason": "Completed" if self.exit_code == 0 else "Error",
                "startedAt": self.started_at, "finishedAt": self.finished_at, "containerID": self.container_id}

    def status(self) -> dict:
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self._terminated()}
        else:
            state = {"waiting": {"reason": self.waiting_reason}}
        running = self.state == "running"
        out = {
            "name": self.name,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
            "ready": (self.state == "terminated" and self.exit_code == 0) if self.init else running,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": "",
            "started": running,
        }
        if self.container_id:
            out["containerID"] = self.container_id
            out["imageID"] = f"{self.image}@sha256:{'0' * 64}"
        return out


@dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    init_containers: list[Container]
    containers: list[Container]
    netns: str | None = None
    ip: str | None = None
    start_time: str | None = None
    deleting: bool = False
    #: set when the init agent got TERM: the pod's start proceeds.
    init_released: asyncio.Event = field(default_factory=asyncio.Event)
    #: condition type → (status, lastTransitionTime), so transition times only move on a change.
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    setup: asyncio.Future | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)

    def container(self, name: str) -> Container | None:
        for c in self.init_containers + self.containers:
            if c.name == name:
                return c
        return None


class Kubelet:
    def __init__(self, store: Store, network: Any, *, restart_delay: float = 0.5, max_grace: float = 0.5):
        self._store = store
        self._network = network
        self._restart_delay = restart_delay
        self._max_grace = max_grace
        self._pods: dict[str, PodRuntime] = {}  # by UID
        self._deletions: set[asyncio.Task] = set()
        store.listeners.append(self._on_event)

    # admission -----------------------------------------------------------------------------------------
    @staticmethod
    def admit(pod: dict) -> None:
        """Validate a new pod and fill the defaults the API server and scheduler would (before it is stored)."""
        name = pod["metadata"]["name"]
        spec = pod.get("spec")
        if not isinstance(spec, dict) or not spec.get("containers"):
            raise errors.invalid(PODS, name, "spec.containers: Required value")
        seen = set()
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            if not c.get("name"):
                raise errors.invalid(PODS, name, "spec.containers[].name: Required value")
            if not c.get("image"):
                raise errors.invalid(PODS, name, f"spec.containers[{c['name']}].image: Required value")
            if c["name"] in seen:
                raise errors.invalid(PODS, name, f'spec.containers[].name: Duplicate value: "{c["name"]}"')
            seen.add(c["name"])
            c.setdefault("imagePullPolicy", "IfNotPresent")
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec["nodeName"] = spec.get("nodeName") or NODE_NAME
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort",
                         "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                         "lastTransitionTime": now_rfc3339()}]}

    # lookups (for the API and for tests) ---------------------------------------------------------------
    def runtime(self, namespace: str, name: str) -> PodRuntime | None:
        pod = self._store.get(PODS, namespace, name)
        return self._pods.get(pod["metadata"]["uid"]) if pod else None

    def exec_target(self, namespace: str, name: str, container: str | None) -> tuple[PodRuntime, Container]:
        """The pod and container an exec goes to, or the API server's 404/400."""
        pod = self._store.require(PODS, namespace, name)
        runtime = self._pods.get(pod["metadata"]["uid"])
        if runtime is None:
            raise errors.not_found(PODS, name)
        if container is None:
            if len(runtime.containers) > 1:
                names = " ".join(c.name for c in runtime.containers)
                raise errors.bad_request(f"a container name must be specified for pod {name}, choose one "
                                         f"of: [{names}]")
            target = runtime.containers[0]
        else:
            target = runtime.container(container)
            if target is None:
                raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if target.state != "running" or runtime.netns is None:
            raise errors.bad_request(f'container not found ("{target.name}")')
        return runtime, target

    # events --------------------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.resource != PODS or event.type != "ADDED":
            return
        m, spec = event.obj["metadata"], event.obj.get("spec") or {}
        runtime = PodRuntime(
            uid=m["uid"], namespace=m.get("namespace", ""), name=m["name"],
            init_containers=[Container(c["name"], c.get("image", ""), True) for c in spec.get("initContainers") or []],
            containers=[Container(c["name"], c.get("image", ""), False) for c in spec.get("containers") or []],
        )
        self._pods[runtime.uid] = runtime
        self._spawn(runtime, self._start(runtime))

    def _spawn(self, runtime: PodRuntime, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        runtime.tasks.add(task)
        task.add_done_callback(runtime.tasks.discard)

    async def _start(self, runtime: PodRuntime) -> None:
        loop = asyncio.get_running_loop()
        self._publish(runtime)
        runtime.setup = loop.run_in_executor(None, self._network.add_pod, runtime.uid)
        try:
            runtime.netns, runtime.ip = await asyncio.shield(runtime.setup)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sandbox: network setup failed for pod {}/{}", runtime.namespace, runtime.name)
            return
        runtime.start_time = now_rfc3339()
        logger.debug("sandbox: pod {}/{} has netns {} ip {}", runtime.namespace, runtime.name, runtime.netns,
                     runtime.ip)
        for container in runtime.init_containers:
            container.run()
            if container.name != INIT_AGENT:
                container.terminate(0)
                continue
            self._publish(runtime)
            await runtime.init_released.wait()
        for container in runtime.containers:
            container.run()
        self._publish(runtime)

    # signals from exec ---------------------------------------------------------------------------------
    def signal_pid1(self, runtime: PodRuntime, container: Container, signum: int = signal.SIGTERM) -> None:
        """`kill -SIG 1` ran in `container`: it terminates (a main container then restarts). The agents exit
        0 on TERM (and INT); any other signal kills the process: exit 128 + signal."""
        if runtime.deleting or container.state != "running":
            return
        logger.info("sandbox: pod {}/{} container {} got signal {}", runtime.namespace, runtime.name,
                    container.name, signum)
        container.terminate(0 if signum in (signal.SIGTERM, signal.SIGINT) else 128 + signum)
        self._publish(runtime)
        if container.init and container.exit_code == 0:
            runtime.init_released.set()
        else:
            self._spawn(runtime, self._restart(runtime, container))

    async def _restart(self, runtime: PodRuntime, container: Container) -> None:
        await asyncio.sleep(self._restart_delay)
        if runtime.deleting:
            return
        container.last_terminated = container.status()["state"]["terminated"]
        container.restart_count += 1
        container.run()
        self._publish(runtime)

    # status --------------------------------------------------------------------------------------------
    def _condition(self, runtime: PodRuntime, type_: str, true: bool, reason: str | None = None) -> dict:
        value = "True" if true else "False"
        previous = runtime.conditions.get(type_)
        if previous is None or previous[0] != value:
            runtime.conditions[type_] = (value, now_rfc3339())
        out = {"type": type_, "status": value, "lastProbeTime": None,
               "lastTransitionTime": runtime.conditions[type_][1]}
        if not true and reason:
            out["reason"] = reason
        return out

    def _status(self, runtime: PodRuntime) -> dict:
        initialized = all(c.state == "terminated" and c.exit_code == 0 for c in runtime.init_containers) \
            and runtime.netns is not None
        ready = initialized and all(c.state == "running" for c in runtime.containers)
        running = initialized and any(c.state == "running" for c in runtime.containers)
        not_ready = [c.name for c in runtime.containers if c.state != "running"]
        pending_init = [c.name for c in runtime.init_containers if c.state != "terminated"]
        status: dict = {
            "phase": "Running" if running else "Pending",
            "conditions": [
                self._condition(runtime, "PodReadyToStartContainers", runtime.netns is not None),
                self._condition(runtime, "Initialized", initialized, "ContainersNotInitialized"),
                self._condition(runtime, "Ready", ready, "ContainersNotReady"),
                self._condition(runtime, "ContainersReady", ready, "ContainersNotReady"),
                self._condition(runtime, "PodScheduled", True),
            ],
            "hostIP": str(self._network.gateway),
            "qosClass": "BestEffort",
        }
        for condition in status["conditions"]:
            if condition["status"] == "False" and condition["type"] == "Initialized":
                condition["message"] = f"containers with incomplete status: [{' '.join(pending_init)}]"
            elif condition["status"] == "False" and condition["type"] in ("Ready", "ContainersReady"):
                condition["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        status["hostIPs"] = [{"ip": status["hostIP"]}]
        if runtime.ip:
            status["podIP"] = runtime.ip
            status["podIPs"] = [{"ip": runtime.ip}]
        if runtime.start_time:
            status["startTime"] = runtime.start_time
        if runtime.init_containers:
            status["initContainerStatuses"] = [c.status() for c in runtime.init_containers]
        status["containerStatuses"] = [c.status() for c in runtime.containers]
        return status

    def _publish(self, runtime: PodRuntime) -> None:
        if self._pods.get(runtime.uid) is not runtime:
            return
        pod = self._store.get(PODS, runtime.namespace, runtime.name)
        if pod is None or pod["metadata"]["uid"] != runtime.uid:
            return
        new = copy.deepcopy(pod)
        new["status"] = self._status(runtime)
        self._store.put(PODS, new)

    # deletion ------------------------------------------------------------------------------------------
    def delete(self, namespace: str, name: str, grace_seconds: float | None = None) -> dict:
        """Start deleting a pod: terminating now, gone after the grace. Returns the object as the API does."""
        pod = self._store.require(PODS, namespace, name)
        if grace_seconds is None:
            grace_seconds = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        runtime = self._pods.get(pod["metadata"]["uid"])
        if grace_seconds <= 0 or runtime is None:
            gone = self._store.delete(PODS, namespace, name)
            if runtime is not None:
                self._finish_later(runtime, 0.0)
            return gone
        if pod["metadata"].get("deletionTimestamp"):
            return pod
        when = datetime.now(timezone.utc) + timedelta(seconds=grace_seconds)

        def mark(obj: dict) -> None:
            obj["metadata"]["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            obj["metadata"]["deletionGracePeriodSeconds"] = int(grace_seconds)

        terminating = self._store.update(PODS, namespace, name, mark)
        self._finish_later(runtime, min(grace_seconds, self._max_grace))
        return terminating

    def _finish_later(self, runtime: PodRuntime, delay: float) -> None:
        if runtime.deleting:
            return
        runtime.deleting = True
        task = asyncio.get_running_loop().create_task(self._finish(runtime, delay))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _finish(self, runtime: PodRuntime, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._teardown(runtime)
        pod = self._store.get(PODS, runtime.namespace, runtime.name)
        if pod is not None and pod["metadata"]["uid"] == runtime.uid:
            self._store.delete(PODS, runtime.namespace, runtime.name)
        logger.debug("sandbox: pod {}/{} deleted", runtime.namespace, runtime.name)

    async def _teardown(self, runtime: PodRuntime) -> None:
        """Stop the pod's tasks, remove its network namespace (`remove_pod` kills its exec processes too)."""
        runtime.deleting = True
        for task in list(runtime.tasks):
            task.cancel()
        if runtime.setup is not None:
            try:
                await runtime.setup
            except Exception:
                pass
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._network.remove_pod, runtime.uid)
            except Exception:
                logger.exception("sandbox: removing the netns of pod {}/{} failed", runtime.namespace,
                                 runtime.name)
        self._pods.pop(runtime.uid, None)

    async def shutdown(self) -> None:
        """Remove every pod's processes and namespace (the objects stay: the store goes away with us)."""
        for task in list(self._deletions):
            task.cancel()
        await asyncio.gather(*(self._teardown(r) for r in list(self._pods.values())), return_exceptions=True)
