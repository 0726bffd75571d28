"""The netns runtime (the default): a pod is a network namespace on the node bridge (node.py), a container
is a main process in it (containers.py), exec joins that process's namespaces with nsenter.

Fast and image-free: every container runs the agent script whatever its image, command or args (what the
controller needs of a pod); an init container other than `vxlan-controller-agent-init` completes at once
without running anything. Container IDs are made up (`containerd://<random>`); the main processes' output
goes nowhere, so there are no logs.

Exec safety. The argv runs as root, inside the target container: `nsenter` joins the PID, mount and
network namespaces of the container's main process (`ContainerProcess.enter` opens them and checks they
are that process's, never the sandbox's own PID namespace) and forks the command there. So the command
sees only the container's processes (`ps`, /proc), `kill -TERM 1` signals the container's main process
(the kubelet emulation sees it exit: containers terminate because their process ended, no argv is
interpreted here), /run and /tmp are the container's own tmpfs, and nothing it runs can see or signal a
process of the host. Everything else of the filesystem (the binaries) is this machine's, so a missing
binary is looked up here and answered as runc would. The exec's process (`nsenter`, which waits for the
command) is tracked in the node's `ProcessRegistry`: it outlives its client, and is killed with the pod,
or when the server shuts down (the exec handler cancelled).

Deletion. Containers get no TERM: after min(grace, `max_grace`) their main processes are SIGKILLed (each
takes its PID namespace, exec'd commands included, along) and reaped, then the namespace is removed with
whatever is left in it (node.py's `remove_pod`). `max_grace` keeps deletions short for tests: the agent
has nothing to save.

Concurrency contract: everything runs on the sandbox's event loop; node network calls (`ip` commands,
milliseconds) go to the loop's default executor; processes are watched by the loop (pipes, pidfds).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from loguru import logger

from .containers import ContainerError, ContainerProcess, NotRunning, exec_argv, kill_exec
from .execws import STDERR, STDOUT, ExecError, ExecSession, start_error
from .cluster import ClusterNetwork, Node
from .node import NodeNetwork, ProcessRegistry
from .runtime import ContainerRuntime, StartFailed

INIT_AGENT = "vxlan-controller-agent-init"
#: the environment of every exec'd command: what a container image's config typically gives.
EXEC_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
#: how long killed main processes get to be reaped before their launchers are killed too, and after that.
REAP_TIMEOUT, LAUNCHER_REAP_TIMEOUT = 2.0, 3.0


def _container_id() -> str:
    return "containerd://" + secrets.token_hex(32)


@dataclass(eq=False)
class NetnsPod:
    uid: str
    namespace: str
    name: str
    netns: str
    ip: str
    #: every address, primary first (`ip`)
    ips: tuple[str, ...]
    #: every main process started and not reaped yet (removal kills and reaps them).
    processes: set[ContainerProcess] = field(default_factory=set)


@dataclass(frozen=True, eq=False)
class NetnsContainer:
    process: ContainerProcess
    container_id: str


class NetnsRuntime(ContainerRuntime):
    def __init__(self, network: ClusterNetwork, *, max_grace: float = 0.5) -> None:
        self.network = network
        self.host_ip = next(iter(network.nodes.values())).addresses[0]
        self._max_grace = max_grace

    def nodes(self) -> list[Node]:
        return list(self.network.nodes.values())

    def preflight(self) -> None:
        NodeNetwork.remove_stale()

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.network.start)

    async def stop(self) -> None:
        self.network.processes.kill_everything()
        await asyncio.get_running_loop().run_in_executor(None, self.network.stop)

    def stop_from_thread(self) -> None:
        self.network.stop()

    async def add_pod(self, uid: str, namespace: str, name: str, spec: dict) -> NetnsPod:
        node = self.network.node_of(spec.get("nodeName", ""))
        netns, ip = await asyncio.get_running_loop().run_in_executor(None, node.add_pod, uid)
        return NetnsPod(uid, namespace, name, netns, ip, node.pod_ips(uid))

    def completes_at_once(self, name: str) -> str | None:
        return None if name == INIT_AGENT else _container_id()

    async def start_container(self, pod: NetnsPod, name: str, spec: dict, *, init: bool,
                              attempt: int) -> NetnsContainer:
        """The main process, running once it mounted its /run and /tmp and trapped TERM."""
        label = f"{pod.namespace}/{pod.name}:{name}"
        try:
            process = ContainerProcess.spawn(pod.netns, label)
        except OSError as exc:
            raise StartFailed(f"container {label} cannot start: {exc}", _container_id()) from None
        pod.processes.add(process)
        try:
            await process.ready()
        except ContainerError as exc:
            await process.wait()  # killed by ready(): reap it
            pod.processes.discard(process)
            raise StartFailed(str(exc), _container_id()) from None
        return NetnsContainer(process, _container_id())

    async def wait(self, pod: NetnsPod, instance: NetnsContainer) -> int:
        code = await instance.process.wait()
        pod.processes.discard(instance.process)
        return code

    def exec(self, pod: NetnsPod, instance: NetnsContainer) -> "NetnsExec":
        return NetnsExec(instance.process, self.network.processes)

    async def logs(self, pod: NetnsPod, name: str, *, previous: bool, follow: bool, tail: int | None,
                   timestamps: bool) -> AsyncGenerator[bytes, None]:
        for chunk in ():  # the main processes' output goes nowhere
            yield chunk

    async def remove_pod(self, pod: NetnsPod, grace: float) -> None:
        await asyncio.sleep(min(grace, self._max_grace))
        processes = list(pod.processes)
        for process in processes:
            process.kill()
        if processes:
            reaped = {asyncio.ensure_future(p.wait()): p for p in processes}
            _, pending = await asyncio.wait(reaped, timeout=REAP_TIMEOUT)
            for future in pending:
                reaped[future].kill(launcher=True)
            if pending and (await asyncio.wait(pending, timeout=LAUNCHER_REAP_TIMEOUT))[1]:
                logger.error("sandbox: pod {}/{}: main processes did not end after SIGKILL", pod.namespace,
                             pod.name)
            pod.processes.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.network.remove_pod, pod.uid)


class NetnsExec:
    """Runs exec'd commands in one container's namespaces (an `execws.ContainerExec`)."""

    def __init__(self, process: ContainerProcess, registry: ProcessRegistry) -> None:
        self.process = process
        self.registry = registry

    async def run(self, session: ExecSession, argv: list[str], *, stdin: bool, stdout: bool,
                  stderr: bool) -> int:
        error = _start_error(argv)
        if error is not None:
            raise ExecError(error)
        try:
            namespaces = self.process.enter()
        except NotRunning as exc:
            raise ExecError(f"error executing command in container: {exc}") from None
        try:
            return await _run(session, self.process.netns, namespaces, argv, stdin=stdin, stdout=stdout,
                              stderr=stderr, processes=self.registry)
        except OSError as exc:  # could not even start `nsenter` (out of fds, processes…)
            logger.error("exec {}: cannot start {}: {}", session.target, shlex.join(argv), exc)
            raise ExecError(f"error executing command in container: {exc}") from None


def _start_error(argv: list[str]) -> str | None:
    """runc's reason why `argv[0]` cannot be exec'd (looked up on this machine's filesystem), or None."""
    prog = argv[0] if argv else ""
    if not prog:
        problem = 'exec: "": executable file not found in $PATH'
    elif "/" in prog:
        if not os.path.exists(prog):
            problem = f'exec: "{prog}": stat {prog}: no such file or directory'
        elif os.path.isdir(prog) or not os.access(prog, os.X_OK):
            problem = f'exec: "{prog}": permission denied'
        else:
            return None
    else:
        for d in EXEC_ENV["PATH"].split(":"):
            p = os.path.join(d, prog)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return None
        problem = f'exec: "{prog}": executable file not found in $PATH'
    return start_error(problem)


async def _run(s: ExecSession, netns: str, namespaces: list[int], argv: list[str], *, stdin: bool,
               stdout: bool, stderr: bool, processes: ProcessRegistry) -> int:
    """Run the command to its end in the container whose `namespaces` (fds, closed here) are given,
    streaming while the client listens; returns containerd's exit code."""
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *exec_argv(namespaces, argv), stdin=pipe if stdin else null, stdout=pipe if stdout else null,
            stderr=pipe if stderr else null, env=EXEC_ENV, cwd="/", start_new_session=True, pass_fds=namespaces)
    finally:
        for fd in namespaces:
            os.close(fd)
    if not processes.add(netns, proc.pid):
        logger.info("exec {}: pod is being removed, command killed: {}", s.target, shlex.join(argv))
    tasks = [asyncio.create_task(_pump(s, proc.stdout, STDOUT)) if stdout else None,
             asyncio.create_task(_pump(s, proc.stderr, STDERR)) if stderr else None,
             asyncio.create_task(_feed(s, proc.stdin)) if stdin else None]
    try:
        await asyncio.gather(*(t for t in tasks[:2] if t))  # both output pipes at EOF
        code = await proc.wait()
    except asyncio.CancelledError:
        if proc.returncode is None:
            kill_exec(proc.pid)
        raise
    finally:
        for t in tasks:
            if t:
                t.cancel()
        processes.discard(netns, proc.pid)
    if s.gone:
        logger.debug("exec {}: finished after its stream ended ({}), exit {}: {}", s.target, s.how_gone, code,
                     shlex.join(argv))
    return 128 - code if code < 0 else code


async def _pump(s: ExecSession, stream: asyncio.StreamReader, channel: int) -> None:
    while chunk := await stream.read(65536):
        await s.send(channel, chunk)


async def _feed(s: ExecSession, pipe: asyncio.StreamWriter) -> None:
    try:
        while (data := await s.read_stdin()) is not None:
            pipe.write(data)
            await pipe.drain()
    except (BrokenPipeError, ConnectionResetError):
        return  # the command stopped reading its stdin
    finally:
        pipe.close()
