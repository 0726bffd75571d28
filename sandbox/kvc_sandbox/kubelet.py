"""Kubelet emulation: each pod's lifecycle, from network namespace to container statuses to deletion,
over a container runtime (runtime.py: netnsruntime.py or dockerruntime.py).

Concurrency contract: everything here runs on the sandbox's event loop; the runtime's coroutines never
block it. One asyncio task per pod drives its start (network, then init containers in order, then main
containers), and one per started main container watches its instances; a pod's state lives in its
`PodRuntime` and every change is published by rebuilding the whole `status` from it (level-based: the
published status is always a function of the runtime, never a patch of the last one).

The kubelet learns of a container's end only by its main process exiting (the runtime's `wait`): exit code
0 is `Completed`, anything else `Error` (a main process killed by a signal: 128 + S). Execs (execws.py)
go through the runtime; nothing they run is interpreted here.

Lifecycle:
- created: Pending, PodScheduled; containers waiting.
- network ready: podIP/podIPs/hostIP; init containers run in order, each to completion: exit 0 completes
  it, another exit code restarts it after `restart_delay` (restartCount + 1) unless restartPolicy is Never
  (the pod fails). The runtime may complete an init container at once without running it (the netns
  runtime does so for all but `vxlan-controller-agent-init`). Then every main container starts; once all
  run: phase Running, Ready. A container counts as running once the runtime says it started (the netns
  runtime: its process has mounted its /run and /tmp and trapped TERM), and execs into it are accepted
  from then on.
- a main container's process exits (e.g. `kill -TERM 1` in it): terminated (Completed, exit 0, or Error),
  then a new instance after `restart_delay`, restartCount + 1, as restartPolicy says (Always: every time,
  OnFailure: on a non-zero exit, Never: not at all; once no container will run again the phase is
  Succeeded, or Failed if one ended non-zero). An instance that cannot start: terminated, exit 128,
  StartError, and retried the same way. One that cannot be created (its image not on this machine:
  ErrImageNeverPull): waiting with the runtime's reason, tried again every `WAITING_RETRY` seconds, no
  restart counted.
- Ready: all containers ready AND every readiness gate (`spec.readinessGates`) names a condition whose status
  is "True", with the kubelet's reasons and messages (pkg/kubelet/status/generate.go). Conditions of other
  types than the kubelet's own (`KUBELET_CONDITIONS`) are the clients' (a controller patches them through
  `pods/status`): kept as the API holds them, first in the list as the kubelet's status manager merges
  them, and a change to them makes the kubelet publish the pod again (Ready follows its gates).
- delete: deletionTimestamp set (MODIFIED); the pod's tasks stop (nothing starts or restarts any more),
  the runtime stops its containers with the grace period (each runtime its way, see its docstring) and
  removes them and the pod's network namespace, then the object is DELETED.
Pod UIDs are fresh uuid4s, so a pod re-created with the same name gets a new namespace.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from loguru import logger

from . import errors
from .cluster import SINGLE_NODE
from .jsoncopy import copy_json
from .nodes import default_tolerations, internal_ips, schedule
from .probes import Probe, probes_of, run_probe
from .resources import NODES, PODS
from .runtime import ContainerRuntime, ContainerWaiting, StartFailed
from .store import Event, Store, now_rfc3339

NODE_NAME = SINGLE_NODE
#: the condition types the kubelet owns (kubetypes.PodConditionsByKubelet); any other is a client's
KUBELET_CONDITIONS = frozenset({"PodScheduled", "Ready", "Initialized", "ContainersReady",
                                "PodReadyToStartContainers"})
#: seconds between two tries of a container that could not be created (its image missing…)
WAITING_RETRY = 2.0


@dataclass
class Container:
    name: str
    image: str
    init: bool
    #: the container's entry of the pod spec
    spec: dict = field(default_factory=dict, repr=False)
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "PodInitializing"
    waiting_message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int = 0
    restart_count: int = 0
    container_id: str | None = None
    last_terminated: dict | None = None
    reason: str | None = None  # of the last termination, when not Completed/Error
    message: str | None = None  # of the last termination, when the runtime said why
    #: the runtime's instance while the container runs
    instance: Any = field(default=None, repr=False)
    #: its readiness probe's verdict for the running instance (True without a probe that runs)
    probe_ready: bool = True
    #: the probe tasks of the running instance (cancelled when it ends)
    probes: set = field(default_factory=set, repr=False)

    def run(self, container_id: str, instance: Any = None, probed: bool = False) -> None:
        self.state, self.started_at, self.finished_at = "running", now_rfc3339(), None
        self.container_id, self.instance, self.probe_ready = container_id, instance, not probed

    @property
    def ready(self) -> bool:
        if self.init:
            return self.state == "terminated" and self.exit_code == 0
        return self.state == "running" and self.probe_ready

    def terminate(self, exit_code: int = 0, reason: str | None = None, message: str | None = None) -> None:
        self.state, self.exit_code, self.finished_at = "terminated", exit_code, now_rfc3339()
        self.reason, self.message, self.instance = reason, message, None

    def wait_for(self, reason: str, message: str) -> None:
        self.state, self.waiting_reason, self.waiting_message, self.instance = "waiting", reason, message, None

    def _terminated(self) -> dict:
        out = {"exitCode": self.exit_code,
               "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
               "startedAt": self.started_at, "finishedAt": self.finished_at, "containerID": self.container_id}
        if self.message:
            out["message"] = self.message
        return out

    def status(self) -> dict:
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self._terminated()}
        else:
            state = {"waiting": {"reason": self.waiting_reason}}
            if self.waiting_message:
                state["waiting"]["message"] = self.waiting_message
        running = self.state == "running"
        out = {
            "name": self.name,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
            "ready": self.ready,
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
    restart_policy: str = "Always"
    #: the pod's spec as created (the runtime reads what applies to all containers from it)
    spec: dict = field(default_factory=dict)
    #: the runtime's pod sandbox (its network namespace), once set up
    sandbox: Any = None
    ip: str | None = None
    ips: tuple[str, ...] = ()
    start_time: str | None = None
    deleting: bool = False
    #: condition type → (status, lastTransitionTime), so transition times only move on a change.
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the runtime's `add_pod`, shielded from the pod's tasks: teardown waits for it
    setup: asyncio.Task | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)

    def container(self, name: str) -> Container | None:
        for c in self.init_containers + self.containers:
            if c.name == name:
                return c
        return None


class Kubelet:
    def __init__(self, store: Store, runtime: ContainerRuntime, *, restart_delay: float = 0.5):
        self._store = store
        self._runtime = runtime
        self._restart_delay = restart_delay
        self._pods: dict[str, PodRuntime] = {}  # by UID
        self._deletions: set[asyncio.Task] = set()
        #: the nodes this kubelet runs, and those cut off (nodes.py: their pods are neither published nor
        #: deleted, execs into them fail, until the node is back)
        self._nodes = {node.name for node in runtime.nodes()}
        self._unreachable: set[str] = set()
        store.listeners.append(self._on_event)

    # admission -----------------------------------------------------------------------------------------
    def admit(self, pod: dict) -> None:
        """Validate a new pod and fill the defaults the API server, its admission plugins and the scheduler
        would (before it is stored): see nodes.py for the node and the tolerations."""
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
        default_tolerations(spec)
        node = schedule(self._store, spec)
        scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                     "lastTransitionTime": now_rfc3339()}
        if node is None:
            scheduled.update(status="False", reason="Unschedulable",
                             message=f"0/{len(self._store.list(NODES))} nodes are available: none is Ready, "
                                     "untainted and matching the pod's node selector.")
        else:
            spec["nodeName"] = node
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [scheduled]}

    # lookups (for the API and for tests) ---------------------------------------------------------------
    def runtime(self, namespace: str, name: str) -> PodRuntime | None:
        pod = self._store.get(PODS, namespace, name)
        return self._pods.get(pod["metadata"]["uid"]) if pod else None

    def netns(self, namespace: str, name: str) -> str | None:
        """The named network namespace of a live pod (under /run/netns: the netns runtime's), else None."""
        runtime = self.runtime(namespace, name)
        return getattr(runtime.sandbox, "netns", None) if runtime is not None else None

    def _target(self, namespace: str, name: str, container: str | None, *,
                list_init: bool = False) -> tuple[PodRuntime, Container]:
        """The pod and the container a request names (the pod's only container when none is named), or the
        API server's 404/400; `list_init`: that 400 also names the init containers (as for logs)."""
        pod = self._store.require(PODS, namespace, name)
        runtime = self._pods.get(pod["metadata"]["uid"])
        if runtime is None:
            raise errors.not_found(PODS, name)
        if container is None:
            if len(runtime.containers) > 1:
                names = " ".join(c.name for c in runtime.containers)
                init = " ".join(c.name for c in runtime.init_containers) if list_init else ""
                raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                         f"[{names}]" + (f" or one of the init containers: [{init}]" if init else ""))
            return runtime, runtime.containers[0]
        target = runtime.container(container)
        if target is None:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return runtime, target

    def exec_target(self, namespace: str, name: str, container: str | None) -> tuple[Container, Any]:
        """The container an exec goes to and what runs commands in it (an `execws.ContainerExec`), or the
        API server's 404/400."""
        runtime, target = self._target(namespace, name, container)
        node = runtime.spec.get("nodeName")
        if node in self._unreachable:
            address = next(iter(internal_ips(self._store.get(NODES, "", node))), node)
            raise errors.ApiError(500, "InternalError",
                                  f"error dialing backend: dial tcp {address}:10250: connect: no route to host")
        if target.state != "running" or target.instance is None or runtime.sandbox is None:
            raise errors.bad_request(f'container not found ("{target.name}")')
        return target, self._runtime.exec(runtime.sandbox, target.instance)

    def logs(self, namespace: str, name: str, container: str | None, *, previous: bool, follow: bool,
             tail: int | None, timestamps: bool) -> AsyncGenerator[bytes, None]:
        """The output of a pod's container as `GET …/log` serves it, or the API server's 404/400."""
        runtime, target = self._target(namespace, name, container, list_init=True)
        if previous and target.restart_count == 0:
            raise errors.bad_request(f'previous terminated container "{target.name}" in pod "{name}" not found')
        if target.container_id is None or runtime.sandbox is None:
            raise errors.bad_request(f'container "{target.name}" in pod "{name}" is waiting to start: '
                                     f"{target.waiting_reason}")
        return self._runtime.logs(runtime.sandbox, target.name, previous=previous, follow=follow, tail=tail,
                                  timestamps=timestamps)

    # events --------------------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.resource != PODS:
            return
        if event.type == "MODIFIED" and event.old is not None:
            runtime = self._pods.get(event.obj["metadata"]["uid"])
            if runtime is not None and client_conditions(event.old) != client_conditions(event.obj):
                # After this write (a status patch), as the kubelet's next sync would: Ready follows its gates.
                asyncio.get_running_loop().call_soon(self._publish, runtime)
            return
        if event.type != "ADDED":
            return
        m, spec = event.obj["metadata"], event.obj.get("spec") or {}
        if spec.get("nodeName") not in self._nodes:
            return  # unscheduled, or bound to a node nobody runs: Pending, as a real cluster leaves it
        runtime = PodRuntime(
            uid=m["uid"], namespace=m.get("namespace", ""), name=m["name"],
            init_containers=[Container(c["name"], c.get("image", ""), True, copy_json(c))
                             for c in spec.get("initContainers") or []],
            containers=[Container(c["name"], c.get("image", ""), False, copy_json(c))
                        for c in spec.get("containers") or []],
            restart_policy=spec.get("restartPolicy", "Always"), spec=copy_json(spec),
        )
        self._pods[runtime.uid] = runtime
        self._spawn(runtime, self._start(runtime))

    def _spawn(self, runtime: PodRuntime, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        runtime.tasks.add(task)
        task.add_done_callback(runtime.tasks.discard)

    async def _start(self, runtime: PodRuntime) -> None:
        self._publish(runtime)
        runtime.setup = asyncio.ensure_future(self._runtime.add_pod(runtime.uid, runtime.namespace, runtime.name,
                                                                    runtime.spec))
        try:
            runtime.sandbox = await asyncio.shield(runtime.setup)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sandbox: network setup failed for pod {}/{}", runtime.namespace, runtime.name)
            return
        runtime.ip, runtime.ips = runtime.sandbox.ip, runtime.sandbox.ips
        runtime.start_time = now_rfc3339()
        logger.debug("sandbox: pod {}/{} has sandbox {}", runtime.namespace, runtime.name, runtime.sandbox)
        for container in runtime.init_containers:
            container_id = self._runtime.completes_at_once(container.name)
            if container_id is not None:
                container.run(container_id)
                container.terminate(0)
                continue
            instance = await self._run_container(runtime, container)
            self._publish(runtime)
            if not await self._supervise(runtime, container, instance):  # True once it exited 0
                return  # failed for good (restartPolicy Never)
        instances = await asyncio.gather(*(self._run_container(runtime, c) for c in runtime.containers))
        self._publish(runtime)
        for container, instance in zip(runtime.containers, instances):
            self._spawn(runtime, self._supervise(runtime, container, instance))

    # containers ----------------------------------------------------------------------------------------
    async def _run_container(self, runtime: PodRuntime, container: Container) -> Any:
        """Start an instance of the container; the container is running once the runtime started it. None
        if it did not: the container is then terminated (exit 128, StartError), or waiting (its image is
        missing…)."""
        try:
            instance = await self._runtime.start_container(runtime.sandbox, container.name, container.spec,
                                                           init=container.init, attempt=container.restart_count)
        except ContainerWaiting as exc:
            if (container.waiting_reason, container.waiting_message) != (exc.reason, exc.message):
                logger.warning("sandbox: pod {}/{} container {}: {}", runtime.namespace, runtime.name,
                               container.name, exc.message)
            container.wait_for(exc.reason, exc.message)
            return None
        except StartFailed as exc:
            logger.error("sandbox: {}", exc)
            container.run(exc.container_id)
            container.terminate(128, "StartError", exc.message)
            return None
        probes = probes_of(container.spec) if self._runtime.supports_probes and not container.init else []
        container.run(instance.container_id, instance,
                      probed=any(probe.kind == "readiness" for probe in probes))
        for probe in probes:
            self._spawn_probe(runtime, container, instance, probe)
        return instance

    def _spawn_probe(self, runtime: PodRuntime, container: Container, instance: Any, probe: Probe) -> None:
        """Run `probe` for as long as `instance` is the container's: readiness sets its `ready`, a failed
        liveness probe stops the instance with the pod's grace period (the restart follows as for any exit)."""
        def on_ready(ready: bool) -> None:
            if container.instance is instance:
                container.probe_ready = ready
                self._publish(runtime)

        def on_dead() -> None:
            if container.instance is instance and not runtime.deleting:
                grace = float(runtime.spec.get("terminationGracePeriodSeconds", 30))
                self._spawn(runtime, self._runtime.stop_container(runtime.sandbox, instance, grace))

        async def probing() -> None:
            task = asyncio.current_task()
            try:
                await run_probe(probe, functools.partial(self._runtime.http_get, runtime.sandbox), on_ready=on_ready,
                                on_dead=on_dead, name=f"pod {runtime.namespace}/{runtime.name} container {container.name}")
            finally:
                container.probes.discard(task)

        task = asyncio.get_running_loop().create_task(probing())
        container.probes.add(task)
        runtime.tasks.add(task)
        task.add_done_callback(runtime.tasks.discard)

    def _restarts(self, runtime: PodRuntime, container: Container) -> bool:
        """Does restartPolicy start the terminated container again? (An init container that exited 0 is
        done, whatever the policy.)"""
        policy = runtime.restart_policy
        if container.init:
            return policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and container.exit_code != 0)

    async def _supervise(self, runtime: PodRuntime, container: Container, instance: Any) -> bool:
        """Turn each exit of the container's instances into its status, and start a new one after
        `restart_delay` as restartPolicy says; try a waiting one (its image missing…) every WAITING_RETRY s.
        True once an init container exited 0; False when the container will not run again (or the pod is
        being deleted)."""
        while True:
            if instance is not None:
                code = await self._runtime.wait(runtime.sandbox, instance)
                for task in list(container.probes):
                    task.cancel()
                if runtime.deleting:
                    return False
                logger.info("sandbox: pod {}/{} container {} exited {}", runtime.namespace, runtime.name,
                            container.name, code)
                container.terminate(code)
                self._publish(runtime)
                if container.init and code == 0:
                    return True
            waiting = container.state == "waiting"  # for its image…
            if not waiting and not self._restarts(runtime, container):
                return False
            await asyncio.sleep(WAITING_RETRY if waiting else self._restart_delay)
            if runtime.deleting:
                return False
            if not waiting:
                container.last_terminated = container.status()["state"]["terminated"]
                container.restart_count += 1
            before = container.status()
            instance = await self._run_container(runtime, container)
            if container.status() != before:
                self._publish(runtime)

    # status ---------------------------------------------------------------------------------------------
    def _condition(self, runtime: PodRuntime, type_: str, true: bool, reason: str | None = None,
                   message: str | None = None) -> dict:
        value = "True" if true else "False"
        previous = runtime.conditions.get(type_)
        if previous is None or previous[0] != value:
            runtime.conditions[type_] = (value, now_rfc3339())
        out = {"type": type_, "status": value, "lastProbeTime": None,
               "lastTransitionTime": runtime.conditions[type_][1]}
        if not true and reason:
            out["reason"] = reason
        if not true and message:
            out["message"] = message
        return out

    def _status(self, runtime: PodRuntime, client: list[dict]) -> dict:
        """The pod's status as the kubelet writes it; `client`: the conditions of other types the API holds."""
        initialized = all(c.state == "terminated" and c.exit_code == 0 for c in runtime.init_containers) \
            and runtime.sandbox is not None
        containers_ready = initialized and all(c.ready for c in runtime.containers)
        running = initialized and any(c.state == "running" for c in runtime.containers)
        not_ready = f"containers with unready status: [{' '.join(c.name for c in runtime.containers if not c.ready)}]"
        pending_init = [c.name for c in runtime.init_containers if c.state != "terminated"]
        init_failed = any(c.state == "terminated" and c.exit_code != 0 and not self._restarts(runtime, c)
                          for c in runtime.init_containers)
        ended = initialized and all(c.state == "terminated" and not self._restarts(runtime, c)
                                    for c in runtime.containers)
        if init_failed or (ended and any(c.exit_code != 0 for c in runtime.containers)):
            phase = "Failed"
        elif ended:
            phase = "Succeeded"
        else:
            phase = "Running" if running else "Pending"
        gates = unready_gates(runtime.spec, client)
        if not containers_ready:
            ready = self._condition(runtime, "Ready", False, "ContainersNotReady", not_ready)
        else:
            ready = self._condition(runtime, "Ready", not gates, "ReadinessGatesNotReady", ", ".join(gates))
        status: dict = {
            "phase": phase,
            "conditions": [
                *client,
                self._condition(runtime, "PodReadyToStartContainers", runtime.sandbox is not None),
                self._condition(runtime, "Initialized", initialized, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(pending_init)}]"),
                ready,
                self._condition(runtime, "ContainersReady", containers_ready, "ContainersNotReady", not_ready),
                self._condition(runtime, "PodScheduled", True),
            ],
            "qosClass": "BestEffort",
        }
        host_ips = internal_ips(self._store.get(NODES, "", runtime.spec.get("nodeName", "")))
        if host_ips:
            status["hostIP"], status["hostIPs"] = host_ips[0], [{"ip": ip} for ip in host_ips]
        if runtime.ip:
            status["podIP"] = runtime.ip
            status["podIPs"] = [{"ip": ip} for ip in runtime.ips]
        if runtime.start_time:
            status["startTime"] = runtime.start_time
        if runtime.init_containers:
            status["initContainerStatuses"] = [c.status() for c in runtime.init_containers]
        status["containerStatuses"] = [c.status() for c in runtime.containers]
        return status

    def _publish(self, runtime: PodRuntime) -> None:
        if self._pods.get(runtime.uid) is not runtime or runtime.spec.get("nodeName") in self._unreachable:
            return
        pod = self._store.get(PODS, runtime.namespace, runtime.name)
        if pod is None or pod["metadata"]["uid"] != runtime.uid:
            return
        new = copy_json(pod)
        new["status"] = self._status(runtime, client_conditions(pod))
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
        if runtime.spec.get("nodeName") not in self._unreachable:  # else once the node is back (`restore`)
            self._finish_later(runtime, grace_seconds)
        return terminating

    # nodes cut off (nodes.py) --------------------------------------------------------------------------
    def cut(self, node: str) -> None:
        self._unreachable.add(node)

    def restore(self, node: str) -> None:
        """The node's kubelet reports again: its pods' statuses, and the deletions it missed."""
        self._unreachable.discard(node)
        for runtime in list(self._pods.values()):
            if runtime.spec.get("nodeName") != node:
                continue
            pod = self._store.get(PODS, runtime.namespace, runtime.name)
            if pod is not None and pod["metadata"].get("deletionTimestamp"):
                self._finish_later(runtime, 0.0)
            else:
                self._publish(runtime)

    def _finish_later(self, runtime: PodRuntime, grace: float) -> None:
        if runtime.deleting:
            return
        runtime.deleting = True
        task = asyncio.get_running_loop().create_task(self._finish(runtime, grace))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _finish(self, runtime: PodRuntime, grace: float) -> None:
        await self._teardown(runtime, grace)
        pod = self._store.get(PODS, runtime.namespace, runtime.name)
        if pod is not None and pod["metadata"]["uid"] == runtime.uid:
            self._store.delete(PODS, runtime.namespace, runtime.name)
        logger.debug("sandbox: pod {}/{} deleted", runtime.namespace, runtime.name)

    async def _teardown(self, runtime: PodRuntime, grace: float) -> None:
        """Stop the pod's tasks, then have the runtime stop its containers (with `grace` seconds) and
        remove them and the pod's network namespace."""
        runtime.deleting = True
        for task in list(runtime.tasks):
            task.cancel()
        if runtime.setup is not None:
            try:
                sandbox = await asyncio.shield(runtime.setup)
            except Exception:
                sandbox = None  # setup failed: it cleaned up after itself
            if sandbox is not None:
                try:
                    await self._runtime.remove_pod(sandbox, grace)
                except Exception:
                    logger.exception("sandbox: removing pod {}/{} failed", runtime.namespace, runtime.name)
        self._pods.pop(runtime.uid, None)

    async def shutdown(self) -> None:
        """Remove every pod's containers and namespace at once (the objects stay: the store goes away with
        us)."""
        for task in list(self._deletions):
            task.cancel()
        await asyncio.gather(*(self._teardown(r, 0.0) for r in list(self._pods.values())), return_exceptions=True)


def client_conditions(pod: dict) -> list[dict]:
    """The pod's conditions of types the kubelet does not own (readiness gates' and other clients')."""
    return [c for c in (pod.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") not in KUBELET_CONDITIONS]


def unready_gates(spec: dict, conditions: list[dict]) -> list[str]:
    """One message per readiness gate of `spec` not satisfied by `conditions`, in the kubelet's words
    (GeneratePodReadyCondition); empty when every gate's condition is "True"."""
    by_type = {c.get("type"): c for c in conditions}
    messages = []
    for gate in spec.get("readinessGates") or []:
        kind = gate.get("conditionType") if isinstance(gate, dict) else None
        condition = by_type.get(kind)
        if condition is None:
            messages.append(f'corresponding condition of pod readiness gate "{kind}" does not exist.')
        elif condition.get("status") != "True":
            messages.append(f'the status of pod readiness gate "{kind}" is not "True", but {condition.get("status")}')
    return messages
