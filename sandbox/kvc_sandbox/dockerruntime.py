"""The docker runtime: pods are real containers from local images, on a Docker network of the sandbox's
own (`kube-vxlan-sandbox serve --runtime docker`, `Sandbox(runtime="docker")`).

Layout; everything carries the label `kvcsb=<pid>-<tag>` (this runtime instance: `<pid>` the sandbox's
process), containers also `kvcsb.pod=<pod uid>`:

    network  kvcsb-<pid>-<tag>                 a bridge; Docker's IPAM gives it a subnet from its pools, so
                                               it shares none with another sandbox's (or any Docker
                                               network); hostIP = its gateway
    per pod  kvcsb-<pid>-<tag>_POD_<pod>_<ns>_<uid8>            the infra container: holds the pod's network
                                               namespace and IP (the agent image running `sleep infinity`)
             kvcsb-<pid>-<tag>_<container>_<pod>_<ns>_<uid8>_<restarts>   one per container instance

A container instance runs from its image in the infra container's network namespace (`NetworkMode:
container:<infra>`), in a PID namespace of its own, with Docker's default capabilities plus/minus its
securityContext's `capabilities.add/drop`, `runAsUser/runAsGroup` (the pod's as default) and
`readOnlyRootFilesystem`, the pod's emptyDir volumes it mounts (tmpfs), its env (`value`s, and the downward
API's `fieldRef`s: see `field_value`), its workingDir, and command/args as the kubelet maps them: `command` replaces the image's ENTRYPOINT (and drops
its CMD), `args` replace its CMD; with neither, the image's own. Images are never pulled: the pod spec's
name (`:latest` when untagged), except that the seed's agent image (`openvnf/kube-vxlan-controller-agent`,
any tag, or `kube-vxlan-controller-agent`) is the local `AGENT_IMAGE`. A missing image: the container
waits (ErrImageNeverPull, the kubelet's message for pull policy Never; a configuration the engine refuses:
CreateContainerError with its message), and the kubelet tries again later.

In-cluster (the sandbox serves HTTPS, `in_cluster` set): every container gets its pod's service-account
files (token, ca.crt, namespace) read-only at /var/run/secrets/kubernetes.io/serviceaccount and
KUBERNETES_SERVICE_HOST/PORT pointing at the sandbox's HTTPS listener on this network's gateway, as a
kubelet gives them (unless the pod says automountServiceAccountToken: false), so the official client's
in-cluster config works unchanged. httpGet probes (probes.py, run by the kubelet) reach the pod's IP from
this machine (`http_get`); a failed liveness probe stops the instance (`stop_container`).

Restarts: each start is a new container; the instance before it is kept (for `logs --previous`) and
removed at the next start, as the kubelet does.

Exec: Docker's exec API, the connection hijacked (dockerengine.py): output is sent as the process writes
it, stdin is fed as the client sends it, and the client's EOF half-closes the socket, which closes the
process's stdin. A process that cannot start (a missing binary, a container stopping) is answered by runc
on the stdout stream with the exec never having had a process (its Pid stays 0): that becomes the
kubelet's InternalError. A command outlives its
client (as under a kubelet) and ends at the latest with its container.

Deletion: each running container is stopped with the pod's grace period (its stop signal, TERM, then KILL
after the grace), then removed with the infra container. The whole grace, not the sandbox's `max_grace`
(the netns runtime's cap): these are real programs, some of which use their grace to shut down cleanly
(the controller's image: tini forwards TERM to Python's graceful stop), and a stop returns as soon as the
container exits, so well-behaved containers (the agent ends at once on TERM) cost no wait; a program that
ignores TERM (busybox `sleep` as PID 1) holds the pod Terminating for its grace, as on a cluster. Shutting
the sandbox down (grace 0) kills and removes at once.

Leftovers: `start` removes containers and networks whose `kvcsb` label names a process that is gone (a
sandbox that crashed), never those of a live one; `stop` removes everything with this instance's label.

Concurrency contract: everything runs on the sandbox's loop, talking to the engine asynchronously; calls
for different pods run concurrently. A container's start (create, start) runs in a task of its own,
shielded: a pod deleted meanwhile waits for it and then removes what it made.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from loguru import logger

from kube_vxlan_controller import __version__

from .cluster import SINGLE_NODE, Node
from .dockerengine import Engine, EngineError, frames, get_sync, socket_path
from .execws import OCI_EXEC_FAILED, STDERR, STDOUT, ExecError, ExecSession, exec_start_error
from .incluster import MOUNT_PATH, InCluster
from .node import PREFIX
from .runtime import ContainerRuntime, ContainerWaiting, RuntimeUnavailable, StartFailed

#: the agent image `make images` builds, tagged with the release, as deploy/example.yaml names it
AGENT_IMAGE = f"openvnf/kube-vxlan-controller-agent:{__version__}"
#: repositories that name the agent image in manifests (the seed's and ours, with or without the org)
AGENT_REPOSITORIES = ("openvnf/kube-vxlan-controller-agent", "kube-vxlan-controller-agent")
#: what infra containers run (`sleep infinity`): an image every VXLAN pod needs anyway
INFRA_IMAGE = AGENT_IMAGE
LABEL, POD_LABEL, CONTAINER_LABEL = PREFIX, f"{PREFIX}.pod", f"{PREFIX}.container"
#: how long a stop may take beyond the grace (the engine's own work)
STOP_SLACK = 30.0
_tags = itertools.count(1)
#: how runc/containerd answer an exec that never got a process: a failed start, or (the container stopping
#: meanwhile) the shim's connection gone, or containerd's task found in a state that takes no exec
#: (`cannot exec in a stopped state`, `… in a deleted state`: its pod deleted meanwhile)
_START_FAILURES = (OCI_EXEC_FAILED.encode(), b"ttrpc: closed", b"cannot exec in a ")


#: the downward API's fields (env valueFrom.fieldRef) the sandbox fills in
_FIELDS = {
    "metadata.name": lambda pod: pod.name,
    "metadata.namespace": lambda pod: pod.namespace,
    "metadata.uid": lambda pod: pod.uid,
    "spec.serviceAccountName": lambda pod: pod.spec.get("serviceAccountName") or "default",
    "spec.nodeName": lambda pod: pod.spec.get("nodeName", ""),
    "status.podIP": lambda pod: pod.ip,
}


def field_value(pod: "DockerPod", source: dict) -> str:
    """An env var's `valueFrom`: the downward API's fieldRef (above); anything else is not supported and
    gives '' with a warning."""
    path = (source.get("fieldRef") or {}).get("fieldPath", "")
    if path in _FIELDS:
        return _FIELDS[path](pod)
    logger.warning("sandbox: pod {}/{}: env valueFrom {} is not supported: empty", pod.namespace, pod.name, source)
    return ""


def resolve_image(name: str) -> str:
    """The local image a pod spec's `image` names (see the module docstring)."""
    if "@" in name:  # by digest
        return name
    repository, tag = name.rsplit(":", 1) if ":" in name.rsplit("/", 1)[-1] else (name, "latest")
    return AGENT_IMAGE if repository in AGENT_REPOSITORIES else f"{repository}:{tag}"


@dataclass(eq=False)
class DockerPod:
    uid: str
    namespace: str
    name: str
    infra_id: str
    ip: str
    #: the pod's spec (service account, volumes, pod-level security context)
    spec: dict = field(default_factory=dict)
    #: container IDs per container name, oldest first: the current instance and the one before
    instances: dict[str, list[str]] = field(default_factory=dict)
    #: container starts in flight (removal waits for them)
    starting: set[asyncio.Task] = field(default_factory=set)

    @property
    def ips(self) -> tuple[str, ...]:
        """IPv4 only: the Docker network has no IPv6 range (see docs/nodes.md)."""
        return (self.ip,)


@dataclass(frozen=True)
class DockerContainer:
    id: str

    @property
    def container_id(self) -> str:
        return f"docker://{self.id}"


class DockerRuntime(ContainerRuntime):
    def __init__(self) -> None:
        #: the value of every label this runtime puts on what it creates
        self.instance = f"{os.getpid()}-{next(_tags)}"
        #: its network's name, and the prefix of its containers' names
        self.name = f"{PREFIX}-{self.instance}"
        self.host_ip = ""
        self.subnet = ""
        #: set by the sandbox when it serves HTTPS: pods then get service-account files and the API's address
        self.in_cluster: InCluster | None = None
        #: per pod, its service-account files (bind-mounted read-only at MOUNT_PATH)
        self._secrets = Path(tempfile.gettempdir()) / f"{self.name}-serviceaccounts"
        self._path = ""
        self._engine: Engine | None = None

    # lifecycle -----------------------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return [Node(SINGLE_NODE, (self.subnet,), (self.host_ip,))]

    def preflight(self) -> None:
        try:
            self._path = socket_path()
        except ValueError as exc:
            raise RuntimeUnavailable(f"the docker runtime needs a local Docker engine: {exc}") from None
        try:
            status, version = get_sync(self._path, "/version")
            if status != 200:
                raise OSError(f"{status} {version}")
            status, _ = get_sync(self._path, f"/images/{INFRA_IMAGE}/json")
        except (OSError, http.client.HTTPException) as exc:
            raise RuntimeUnavailable(f"the docker runtime needs a Docker engine, and none answers at "
                                     f"unix://{self._path} ({exc}): start dockerd, or use the netns runtime") from None
        if status != 200:
            raise RuntimeUnavailable(f"the docker runtime needs the image {INFRA_IMAGE} (its pods' infra "
                                     f"containers run it): build it with `make images`")

    async def start(self) -> None:
        self._engine = Engine(self._path)
        await _remove_stale(self._engine)
        await self._engine.call("POST", "/networks/create", body={
            "Name": self.name, "Driver": "bridge", "CheckDuplicate": True, "Labels": {LABEL: self.instance}})
        ipam = (await self._engine.call("GET", f"/networks/{self.name}"))["IPAM"]["Config"][0]
        self.subnet, self.host_ip = ipam["Subnet"], ipam["Gateway"]
        logger.info("sandbox docker network {} up: {} gateway {}", self.name, self.subnet, self.host_ip)

    async def stop(self) -> None:
        shutil.rmtree(self._secrets, ignore_errors=True)
        if self._engine is not None:
            await _remove_labelled(self._engine, f"{LABEL}={self.instance}")
            await self._engine.close()
            self._engine = None

    def stop_from_thread(self) -> None:
        shutil.rmtree(self._secrets, ignore_errors=True)

        async def remove() -> None:
            engine = Engine(self._path)
            try:
                await _remove_labelled(engine, f"{LABEL}={self.instance}")
            finally:
                await engine.close()

        if self._path:
            asyncio.run(remove())

    # pods ----------------------------------------------------------------------------------------------
    def _container_name(self, namespace: str, pod: str, uid: str, container: str) -> str:
        return f"{self.name}_{container}_{pod}_{namespace}_{uid[:8]}"

    async def add_pod(self, uid: str, namespace: str, name: str, spec: dict) -> DockerPod:
        engine = self._engine
        created = await engine.call("POST", "/containers/create",
                                    {"name": self._container_name(namespace, name, uid, "POD")}, {
            "Image": INFRA_IMAGE, "Entrypoint": ["sleep", "infinity"], "Cmd": [], "Hostname": name[:63],
            "Labels": {LABEL: self.instance, POD_LABEL: uid}, "HostConfig": {"NetworkMode": self.name}})
        infra = created["Id"]
        try:
            await engine.call("POST", f"/containers/{infra}/start")
            info = await engine.call("GET", f"/containers/{infra}/json")
        except BaseException:
            await asyncio.shield(_remove(engine, infra))
            raise
        ip = info["NetworkSettings"]["Networks"][self.name]["IPAddress"]
        return DockerPod(uid, namespace, name, infra, ip, spec)

    async def remove_pod(self, pod: DockerPod, grace: float) -> None:
        engine = self._engine
        await asyncio.gather(*pod.starting, return_exceptions=True)
        listed = await engine.call("GET", "/containers/json", {"all": "1", "filters": _label_filter(
            f"{POD_LABEL}={pod.uid}")})
        containers = [c["Id"] for c in listed if c["Id"] != pod.infra_id]
        if grace > 0:
            await asyncio.gather(*(_stop(engine, c, grace) for c in containers))
        await asyncio.gather(*(_remove(engine, c) for c in containers))
        await _remove(engine, pod.infra_id)
        shutil.rmtree(self._secrets / pod.uid, ignore_errors=True)
        logger.debug("sandbox: pod {}/{}: {} containers and the infra container removed", pod.namespace,
                     pod.name, len(containers))

    # containers ----------------------------------------------------------------------------------------
    def completes_at_once(self, name: str) -> str | None:
        return None

    async def start_container(self, pod: DockerPod, name: str, spec: dict, *, init: bool,
                              attempt: int) -> DockerContainer:
        task = asyncio.ensure_future(self._start_container(pod, name, spec, attempt))
        pod.starting.add(task)
        task.add_done_callback(pod.starting.discard)
        return await asyncio.shield(task)

    async def _start_container(self, pod: DockerPod, name: str, spec: dict, attempt: int) -> DockerContainer:
        engine = self._engine
        image = resolve_image(spec["image"])
        try:
            config = self._config(pod, name, spec, image)
        except KeyError as exc:  # its service account does not exist (yet): the kubelet tries again
            raise ContainerWaiting("CreateContainerConfigError", f"serviceaccount {exc} not found") from None
        try:
            created = await engine.call("POST", "/containers/create", {
                "name": f"{self._container_name(pod.namespace, pod.name, pod.uid, name)}_{attempt}"}, config)
        except EngineError as exc:
            if exc.status == 404 and "no such image" in exc.message.lower():
                logger.debug("sandbox: image {} (pod spec: {}) is not on this machine", image, spec["image"])
                raise ContainerWaiting("ErrImageNeverPull", f'Container image "{spec["image"]}" is not present '
                                                            f"with pull policy of Never") from None
            raise ContainerWaiting("CreateContainerError", exc.message) from None
        instances = pod.instances.setdefault(name, [])
        instances.append(created["Id"])
        while len(instances) > 2:  # the instance before the previous one: no `logs --previous` reaches it
            await _remove(engine, instances.pop(0))
        try:
            await engine.call("POST", f"/containers/{created['Id']}/start")
        except EngineError as exc:
            raise StartFailed(f"container {pod.namespace}/{pod.name}:{name} cannot start: {exc.message}",
                              f"docker://{created['Id']}") from None
        return DockerContainer(created["Id"])

    def _config(self, pod: DockerPod, name: str, spec: dict, image: str) -> dict:
        pod_security = pod.spec.get("securityContext") or {}
        security = {**{k: v for k, v in pod_security.items() if k in ("runAsUser", "runAsGroup")},
                    **(spec.get("securityContext") or {})}
        capabilities = security.get("capabilities") or {}
        host: dict = {"NetworkMode": f"container:{pod.infra_id}", "CapAdd": capabilities.get("add"),
                      "CapDrop": capabilities.get("drop"), "ReadonlyRootfs": bool(security.get("readOnlyRootFilesystem")),
                      "Tmpfs": self._empty_dirs(pod, spec), "Binds": []}
        env = [f"{e['name']}={field_value(pod, e['valueFrom']) if 'valueFrom' in e else e.get('value', '')}"
               for e in spec.get("env") or []]
        if self.in_cluster is not None and pod.spec.get("automountServiceAccountToken", True) is not False:
            env += [f"{k}={v}" for k, v in self.in_cluster.env().items()]
            host["Binds"].append(f"{self._service_account_dir(pod)}:{MOUNT_PATH}:ro")
        config: dict = {
            "Image": image,
            "Env": env,
            "Labels": {LABEL: self.instance, POD_LABEL: pod.uid, CONTAINER_LABEL: name},
            "HostConfig": host,
        }
        if spec.get("command"):
            config["Entrypoint"], config["Cmd"] = spec["command"], spec.get("args") or []
        elif spec.get("args"):
            config["Cmd"] = spec["args"]
        if spec.get("workingDir"):
            config["WorkingDir"] = spec["workingDir"]
        if security.get("runAsUser") is not None:
            config["User"] = str(security["runAsUser"]) + (
                f":{security['runAsGroup']}" if security.get("runAsGroup") is not None else "")
        return config

    @staticmethod
    def _empty_dirs(pod: DockerPod, spec: dict) -> dict[str, str]:
        """The container's mounts of the pod's emptyDir volumes, as tmpfs (writable by any user; a
        `sizeLimit` of Mi/Gi becomes the tmpfs size). Other volume kinds are not supported."""
        empty = {v["name"]: v["emptyDir"] or {} for v in pod.spec.get("volumes") or [] if "emptyDir" in v}
        mounts = {}
        for mount in spec.get("volumeMounts") or []:
            if mount.get("name") in empty:
                limit = str(empty[mount["name"]].get("sizeLimit", ""))
                size = f",size={limit[:-2]}m" if limit.endswith("Mi") else (
                    f",size={limit[:-2]}g" if limit.endswith("Gi") else "")
                mounts[mount["mountPath"]] = "mode=1777" + size
        return mounts

    def _service_account_dir(self, pod: DockerPod) -> str:
        """The pod's service-account files (token, ca.crt, namespace) on this machine, written once per pod,
        readable by any user as a kubelet's projected volume is (mode 0644), removed with the pod."""
        directory = self._secrets / pod.uid
        if not directory.exists():
            account = pod.spec.get("serviceAccountName") or "default"
            self.in_cluster.write(directory, pod.namespace, account)
            directory.chmod(0o755)
            for file in directory.iterdir():
                file.chmod(0o644)
        return str(directory)

    supports_probes = True

    async def http_get(self, pod: DockerPod, port: int, path: str, timeout: float) -> int:
        """An httpGet probe's request to the pod's IP (this machine routes to the sandbox's network)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(f"http://{pod.ip}:{port}{path}", allow_redirects=False) as response:
                return response.status

    async def stop_container(self, pod: DockerPod, instance: DockerContainer, grace: float) -> None:
        """Stop one instance (TERM, KILL after `grace`), as the kubelet does for a failed liveness probe."""
        await _stop(self._engine, instance.id, grace)

    async def wait(self, pod: DockerPod, instance: DockerContainer) -> int:
        while True:
            try:
                return (await self._engine.call("POST", f"/containers/{instance.id}/wait", timeout=None))[
                    "StatusCode"]
            except EngineError as exc:
                if exc.status != 404:
                    raise
                logger.warning("sandbox: pod {}/{}: container {} was removed from outside", pod.namespace,
                               pod.name, instance.id[:12])
                return 137
            except aiohttp.ClientError as exc:
                logger.warning("sandbox: pod {}/{}: lost the engine while waiting for {} ({}); again in 1 s",
                               pod.namespace, pod.name, instance.id[:12], exc)
                await asyncio.sleep(1.0)

    def exec(self, pod: DockerPod, instance: DockerContainer) -> "DockerExec":
        return DockerExec(self._engine, instance.id)

    async def logs(self, pod: DockerPod, name: str, *, previous: bool, follow: bool, tail: int | None,
                   timestamps: bool) -> AsyncGenerator[bytes, None]:
        instances = pod.instances.get(name, [])
        if len(instances) < (2 if previous else 1):
            return
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow and not previous else "0",
                  "timestamps": "1" if timestamps else "0", "tail": "all" if tail is None else str(tail)}
        try:
            async with self._engine.stream("GET", f"/containers/{instances[-2 if previous else -1]}/logs",
                                           params) as body:
                async for _, data in frames(body):
                    yield data
        except EngineError as exc:
            logger.info("sandbox: pod {}/{}: no logs of {}: {}", pod.namespace, pod.name, name, exc.message)


class DockerExec:
    """Runs exec'd commands in one container through Docker's exec API (an `execws.ContainerExec`)."""

    def __init__(self, engine: Engine, container: str) -> None:
        self.engine = engine
        self.container = container

    async def run(self, session: ExecSession, argv: list[str], *, stdin: bool, stdout: bool,
                  stderr: bool) -> int:
        try:
            return await self._run(session, argv, stdin=stdin, stdout=stdout, stderr=stderr)
        except (EngineError, aiohttp.ClientError, ConnectionError) as exc:
            # 409: the container is not running (any more); 404: it, and its execs, are gone
            message = exc.message if isinstance(exc, EngineError) else str(exc)
            raise ExecError(f"error executing command in container: {message}") from None

    async def _run(self, session: ExecSession, argv: list[str], *, stdin: bool, stdout: bool,
                   stderr: bool) -> int:
        exec_id = (await self.engine.call("POST", f"/containers/{self.container}/exec", body={
            "AttachStdin": stdin, "AttachStdout": stdout, "AttachStderr": stderr, "Tty": False, "Cmd": argv}))["Id"]
        reader, writer = await self.engine.hijack(f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
        feeder = asyncio.create_task(_feed(session, writer)) if stdin else None
        try:
            first = True
            async for stream_type, data in frames(reader):
                if first and data.startswith(_START_FAILURES) and not await self._started(exec_id):
                    raise ExecError(exec_start_error(exec_id, data.decode(errors="replace").strip()))
                first = False
                if stream_type in (STDOUT, STDERR):  # the engine's stream numbers are the channels
                    await session.send(stream_type, data)
        finally:
            if feeder is not None:
                feeder.cancel()
            writer.close()
        code = (await self.engine.call("GET", f"/exec/{exec_id}/json"))["ExitCode"]
        if code is None:  # the engine ended the stream of a process it did not see end
            raise ExecError(f"error executing command in container: exec {exec_id} has no exit code")
        return code

    async def _started(self, exec_id: str) -> bool:
        """Did the exec get a process? (runc's start errors come on stdout of an exec that never had one.)"""
        return bool((await self.engine.call("GET", f"/exec/{exec_id}/json"))["Pid"])


async def _feed(session: ExecSession, writer: asyncio.StreamWriter) -> None:
    try:
        while (data := await session.read_stdin()) is not None:
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        return  # the exec ended and the engine closed the connection


# engine helpers -----------------------------------------------------------------------------------------
def _label_filter(label: str) -> str:
    return json.dumps({"label": [label]})


async def _stop(engine: Engine, container: str, grace: float) -> None:
    try:
        await engine.call("POST", f"/containers/{container}/stop", {"t": str(math.ceil(grace))},
                          timeout=grace + STOP_SLACK)
    except EngineError as exc:
        if exc.status not in (304, 404):
            logger.warning("sandbox: stopping container {}: {}", container[:12], exc.message)


async def _remove(engine: Engine, container: str) -> None:
    try:
        await engine.call("DELETE", f"/containers/{container}", {"force": "1", "v": "1"})
    except EngineError as exc:
        if exc.status != 404:
            logger.warning("sandbox: removing container {}: {}", container[:12], exc.message)


async def _remove_labelled(engine: Engine, label: str) -> tuple[int, int]:
    """Remove every container, then every network, carrying `label` (`key=value`); how many of each."""
    containers = await engine.call("GET", "/containers/json", {"all": "1", "filters": _label_filter(label)})
    await asyncio.gather(*(_remove(engine, c["Id"]) for c in containers))
    networks = await engine.call("GET", "/networks", {"filters": _label_filter(label)})
    for network in networks:
        try:
            await engine.call("DELETE", f"/networks/{network['Id']}")
        except EngineError as exc:
            logger.warning("sandbox: removing network {}: {}", network["Name"], exc.message)
    return len(containers), len(networks)


async def _remove_stale(engine: Engine) -> None:
    """Remove what sandboxes whose process is gone left behind (their `kvcsb` label names the pid)."""
    labels = {c["Labels"][LABEL] for c in await engine.call("GET", "/containers/json", {
        "all": "1", "filters": _label_filter(LABEL)})}
    labels |= {n["Labels"][LABEL] for n in await engine.call("GET", "/networks", {"filters": _label_filter(LABEL)})}
    for value in sorted(labels):
        pid = value.split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            containers, networks = await _remove_labelled(engine, f"{LABEL}={value}")
            logger.info("removed leftovers of the dead sandbox {}: {} containers, {} networks", value,
                        containers, networks)
