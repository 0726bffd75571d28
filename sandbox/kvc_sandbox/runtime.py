"""What the kubelet emulation (kubelet.py) asks of a container runtime; netnsruntime.py and
dockerruntime.py implement it.

    runtime = NetnsRuntime(…) or DockerRuntime(…)
    runtime.preflight()                                       # before the loop: RuntimeUnavailable
    await runtime.start()                                     # its node network
    runtime.nodes()                                           # the nodes: names, pod CIDRs, InternalIPs
    pod = await runtime.add_pod(uid, namespace, name, spec)   # the pod's sandbox: network namespace, pod.ip
    instance = await runtime.start_container(pod, name, spec, init=…, attempt=…)
                                                              # ContainerWaiting, StartFailed
    code = await runtime.wait(pod, instance)                  # its main process's exit code
    exec = runtime.exec(pod, instance)                        # runs commands in it (execws.ContainerExec)
    async for chunk in runtime.logs(pod, name, previous=…, …)
    await runtime.remove_pod(pod, grace)                      # containers stopped and removed, then the sandbox
    await runtime.stop()                                      # everything it created, removed
    runtime.stop_from_thread()                                # the same when the loop is stuck

The kubelet owns the pod's lifecycle and its status (which container runs when, restarts, restartCount,
the states the API shows); a runtime only runs what it is told and reports exits. One container instance
is one start: a restart is a new instance (a new container ID).

Concurrency contract: every coroutine runs on the sandbox's event loop and never blocks it (blocking work
goes to an executor, or talks to the engine asynchronously); `start_container` and `add_pod` of different
pods run concurrently. `preflight` and `stop_from_thread` are the only synchronous calls, made from the
thread that starts or stops the sandbox (the loop is not running, or no longer answers). `remove_pod` may
be called while a `start_container` of the same pod is still in flight (a pod deleted while starting): it
removes that container too.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from .cluster import Node


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot run here (e.g. no Docker engine answers); the message says why in one line."""


class ContainerWaiting(Exception):
    """The container cannot be created now (its image is not on this machine: the sandbox never pulls;
    the engine refused its configuration): it waits with `reason` and `message`, and is tried again later."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class StartFailed(Exception):
    """The container could not start (terminated: exit 128, StartError); `container_id` names the instance
    that failed."""

    def __init__(self, message: str, container_id: str) -> None:
        super().__init__(message)
        self.message, self.container_id = message, container_id


class PodSandbox(Protocol):
    """A pod's network namespace as a runtime holds it."""

    ip: str
    #: every address, primary first (`status.podIPs`)
    ips: tuple[str, ...]


class Instance(Protocol):
    """One started container."""

    #: as the API shows it: `containerd://…`, `docker://…`
    container_id: str


class ContainerRuntime(abc.ABC):
    #: the pod's hostIP: the gateway of the pods' network
    host_ip: str
    #: the kubelet runs httpGet probes (probes.py) only on a runtime whose pods this machine reaches; such a
    #: runtime has `async http_get(pod, port, path, timeout) -> status` and `async stop_container(pod,
    #: instance, grace)` (a failed liveness probe). The netns runtime's pods live in a namespace of their own.
    supports_probes = False

    @abc.abstractmethod
    def nodes(self) -> list[Node]:
        """The nodes pods run on (`add_pod` gets one's name in `spec.nodeName`), once started."""

    @abc.abstractmethod
    def preflight(self) -> None:
        """Before the sandbox starts: RuntimeUnavailable (one line saying why) if this runtime cannot run
        here; may remove leftovers of dead sandboxes."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Create the node network pods join (and remove leftovers of dead sandboxes)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Remove every container, namespace and network this runtime created. Idempotent."""

    @abc.abstractmethod
    def stop_from_thread(self) -> None:
        """`stop`, from another thread, when the sandbox's loop does not end."""

    @abc.abstractmethod
    async def add_pod(self, uid: str, namespace: str, name: str, spec: dict) -> PodSandbox:
        """The pod's network namespace on the node network, with its IP. `spec`: the pod's spec (a copy),
        for what applies to all its containers (service account, volumes, security context)."""

    @abc.abstractmethod
    async def remove_pod(self, pod: PodSandbox, grace: float) -> None:
        """Stop the pod's containers (with `grace` seconds, the runtime's way), remove them and the sandbox."""

    @abc.abstractmethod
    def completes_at_once(self, name: str) -> str | None:
        """For an init container this runtime does not run (it completes at once, exit 0): its container
        ID; None if it runs like any other."""

    @abc.abstractmethod
    async def start_container(self, pod: PodSandbox, name: str, spec: dict, *, init: bool, attempt: int) -> Any:
        """Start a container of the pod from its spec (`attempt`: its restart count); returns the running
        instance (an `Instance`). ContainerWaiting: it cannot be created now; StartFailed: it could not start."""

    @abc.abstractmethod
    async def wait(self, pod: PodSandbox, instance: Any) -> int:
        """Wait for the instance's main process to end; its exit code (128 + S when killed by signal S)."""

    @abc.abstractmethod
    def exec(self, pod: PodSandbox, instance: Any) -> Any:
        """What runs exec'd commands in this instance (an `execws.ContainerExec`)."""

    @abc.abstractmethod
    def logs(self, pod: PodSandbox, name: str, *, previous: bool, follow: bool, tail: int | None,
             timestamps: bool) -> AsyncGenerator[bytes, None]:
        """The output of the container's current instance (or the one before: `previous`), as it is
        written; with `follow`, until the instance ends."""
