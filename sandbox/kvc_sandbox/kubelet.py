"""Kubelet emulation: each pod's lifecycle, from network namespace to container statuses to deletion.

Concurrency contract: everything here runs on the sandbox's event loop, except the node network calls
(`add_pod`, `remove_pod`: blocking `ip` commands), which run in the loop's default executor. One asyncio
task per pod drives its start (network, then init containers in order, then main containers), and one per
running main container watches its main process; a pod's state lives in its `PodRuntime` and every change
is published by rebuilding the whole `status` from it (level-based: the published status is always a
function of the runtime, never a patch of the last one).

Containers are processes (containers.py): a running container has a main process, PID 1 of its own PID
namespace in the pod's network namespace, running the agent script (exit 0 on TERM/INT or once
/run/terminate exists in the container). The kubelet learns of a container's end only by that process
exiting (a pidfd watched by the loop): exit code 0 is `Completed`, anything else `Error` (a main process
killed by a signal from outside: 128 + S, or 1 with util-linux < 2.39). Execs (execws.py) join the
container's namespaces; nothing they run is interpreted here.

Lifecycle:
- created: Pending, PodScheduled; containers waiting.
- network ready: podIP/podIPs/hostIP; init containers run in order. One named `vxlan-controller-agent-init`
  gets a main process and runs until it exits (`kill -TERM 1` executed in it, or `touch /run/terminate`);
  exit 0 completes it, another exit code restarts it after `restart_delay` (restartCount + 1). The other
  init containers complete at once (no process). Then every main container gets its main process; once
  all are started: phase Running, Ready. A container counts as running once its process has mounted its
  /run and /tmp and trapped TERM (execs into it are accepted from then on).
- a main container's process exits (e.g. `kill -TERM 1` in it): terminated (Completed, exit 0, or Error),
  then a new process after `restart_delay`, restartCount + 1 (restartPolicy Always). A process that cannot
  start: terminated, exit 128, StartError, and retried the same way.
- delete: deletionTimestamp set (MODIFIED); after the grace (at most `max_grace`) the pod's main processes
  are killed and reaped, its namespace removed with every process left in it (node.py's
  `NodeNetwork.remove_pod`), then the object is DELETED.
Pod UIDs are fresh uuid4s, so a pod re-created with the same name gets a new namespace.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from loguru import logger

from . import errors
from .containers import ContainerError, ContainerProcess
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
    reason: str | None = None  # of the last termination, when not Completed/Error
    #: the main process while the container runs
    process: ContainerProcess | None = field(default=None, repr=False)

    def run(self, process: ContainerProcess | None = None) -> None:
        self.state, self.started_at, self.finished_at = "running", now_rfc3339(), None
        self.container_id = _container_id()
        self.process = process

    def terminate(self, exit_code: int = 0, reason: str | None = None) -> None:
        self.state, self.exit_code, self.finished_at = "terminated", exit_code, now_rfc3339()
        self.reason, self.process = reason, None

    def _terminated(self) -> dict:
        return {"exitCode": self.exit_code,
                "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
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
    #: every main process started and not reaped yet (teardown kills and reaps them).
    processes: set[ContainerProcess] = field(default_factory=set)
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
        if target.state != "running" or target.process is None or runtime.netns is None:
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
            if container.name != INIT_AGENT:
                container.run()
                container.terminate(0)
                continue
            process = await self._run_container(runtime, container)
            self._publish(runtime)
            await self._supervise(runtime, container, process)  # returns once it exited 0
        processes = await asyncio.gather(*(self._run_container(runtime, c) for c in runtime.containers))
        self._publish(runtime)
        for container, process in zip(runtime.containers, processes):
            self._spawn(runtime, self._supervise(runtime, container, process))

    # containers ----------------------------------------------------------------------------------------
    async def _run_container(self, runtime: PodRuntime, container: Container) -> ContainerProcess | None:
        """Start the container's main process; the container is running once the process is ready. None
        if it could not start: the container is then terminated (exit 128, StartError)."""
        name = f"{runtime.namespace}/{runtime.name}:{container.name}"
        try:
            process = ContainerProcess.spawn(runtime.netns, name)
        except OSError as exc:
            logger.error("sandbox: container {} cannot start: {}", name, exc)
            container.run()
            container.terminate(128, "StartError")
            return None
        runtime.processes.add(process)
        try:
            await process.ready()
        except ContainerError as exc:
            logger.error("sandbox: {}", exc)
            await process.wait()  # killed by ready(): reap it
            runtime.processes.discard(process)
            container.run()
            container.terminate(128, "StartError")
            return None
        container.run(process)
        return process

    async def _supervise(self, runtime: PodRuntime, container: Container, process: ContainerProcess | None) -> None:
        """Turn each exit of the container's main process into its status, and start a new one after
        `restart_delay` (restartPolicy Always). An init container is done once its process exited 0."""
        while True:
            if process is not None:
                code = await process.wait()
                runtime.processes.discard(process)
                if runtime.deleting:
                    return
                logger.info("sandbox: pod {}/{} container {} exited {}", runtime.namespace, runtime.name,
                            container.name, code)
                container.terminate(code)
                self._publish(runtime)
                if container.init and code == 0:
                    return
            await asyncio.sleep(self._restart_delay)
            if runtime.deleting:
                return
            container.last_terminated = container.status()["state"]["terminated"]
            container.restart_count += 1
            process = await self._run_container(runtime, container)
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
        """Stop the pod's tasks, kill and reap its main processes (each takes its PID namespace, exec'd
        commands included, along), remove its network namespace (`remove_pod` kills whatever is left in
        it)."""
        runtime.deleting = True
        for task in list(runtime.tasks):
            task.cancel()
        processes = list(runtime.processes)
        for process in processes:
            process.kill()
        if processes:
            reaped = {asyncio.ensure_future(p.wait()): p for p in processes}
            _, pending = await asyncio.wait(reaped, timeout=2.0)
            for future in pending:
                reaped[future].kill(launcher=True)
            if pending and (await asyncio.wait(pending, timeout=3.0))[1]:
                logger.error("sandbox: pod {}/{}: main processes did not end after SIGKILL", runtime.namespace,
                             runtime.name)
            runtime.processes.clear()
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
