"""The sandbox's containers: each running container has a main process of its own, PID 1 of its own PID
namespace, in its pod's network namespace, with a private mount namespace whose /run and /tmp are tmpfs.

    proc = ContainerProcess.spawn(netns, name="ns/pod:container")
    await proc.ready()          # PID 1 known, /proc, /run, /tmp mounted, TERM handled: it may get execs
    fds = proc.enter()          # its pid, mount and net namespaces, as fds (the caller closes them)
    argv = exec_argv(fds, ["ip", "link"])        # run with pass_fds=fds
    code = await proc.wait()    # its exit code
    proc.kill(); await proc.wait()               # teardown

The main process is `sh kube_vxlan_controller/agent.sh`, the agent image's own main process (the agent
contract: exit 0 on TERM or INT, or once /run/terminate exists). Every container runs it: the init agent, the sidecar agent and any other main
container alike. It starts as

    nsenter --net=/run/netns/NETNS -- unshare --pid --mount --fork --kill-child -- sh -c PRELUDE < FSTAB

`nsenter` enters the pod's network namespace and execs `unshare`, which forks PID 1 of a new PID
namespace, in a new mount namespace (private propagation: nothing mounted there reaches the host). The
prelude, already PID 1, reads its host pid from the host's /proc (`/proc/self` still names the host's view
before its own /proc is mounted), mounts with one `mount -a` (the table is a memfd on its stdin) its own
/proc, a /sys of the pod's network namespace, a tmpfs on /run and one on /tmp, prints `READY <host pid>`
on the pipe `ready()` reads, and runs the agent (TERM is trapped from its first line on: PID 1 ignores
signals it has no handler for). One mount namespace per container, not per pod: a file touched in one
container's /run is not seen by its neighbours. Four execs per start (nsenter, unshare, sh, mount), then
the agent's own (`rm` once, a `sleep` every 5 s).

How exec finds the container: `ready()` checks that the announced pid is the child of our `unshare` and
holds a pidfd of it. `enter()` opens /proc/<pid>/ns/{pid,mnt,net} and then checks through the pidfd that
the process is still alive (so the pid was not reused: the namespaces are this container's), and that the
PID namespace is not the sandbox's own. `exec_argv` hands these fds to `nsenter`, which forks the command
into that PID namespace: it sees only the container's processes, its `kill 1` reaches the container's main
process, its /run and /tmp are the container's. No exec can see or signal a process of the host.

Teardown: `kill()` SIGKILLs PID 1 (the kernel then kills every process of its PID namespace, exec'd
commands included; `unshare` reaps it and dies of the same signal), or `unshare` while PID 1 is not
announced yet (--kill-child); `wait()` reaps.
The pod's removal also kills whatever is left in its network namespace (node.py).

Concurrency contract: a ContainerProcess lives on the sandbox's event loop: `ready` and `wait` are
coroutines (a pipe and a pidfd watched by the loop, no thread per process), `spawn`, `enter` and `kill`
are quick synchronous calls (a vfork/exec, a few opens).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import signal
import subprocess
import threading
from pathlib import Path

from loguru import logger

from .node import NETNS_DIR

READY = "kvc-sandbox-container-ready"
START_TIMEOUT = 10.0
#: the environment of the main process (the agent needs nothing more). The agent looks for
#: /run/terminate every 5 s instead of every second: hundreds of idle pods would otherwise keep a core
#: busy with `sleep`s; TERM, which the controller sends, ends it at once anyway.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "AGENT_POLL_SECONDS": "5"}
#: the agent image's main process (shipped in the package; the Dockerfile copies the same file).
AGENT_FILE = Path(str(importlib.resources.files("kube_vxlan_controller") / "agent.sh"))


def agent_script() -> str:
    return AGENT_FILE.read_text()


#: The container's own mounts. Sources are named so that `mount -a` does not skip them as "already
#: mounted" (the host has a proc on /proc, a tmpfs on /run…); they stay in the container's namespace.
FSTAB = """sandbox-proc /proc proc nosuid,nodev,noexec 0 0
sandbox-sysfs /sys sysfs nosuid,nodev,noexec 0 0
sandbox-run /run tmpfs nosuid,nodev,mode=0755,size=16m 0 0
sandbox-tmp /tmp tmpfs nosuid,nodev,mode=1777,size=64m 0 0
"""

#: PID 1's first steps (stdin: FSTAB); the agent's text comes in the environment (keeps `ps` readable in
#: the container). After READY its output goes nowhere: the pipe only carries the start (and why a start
#: failed).
PRELUDE = f"""trap 'exit 0' TERM INT
read -r kvc_host_pid _ < /proc/self/stat
mount -n -a -T /dev/stdin || exit 125
echo "{READY} $kvc_host_pid"
exec </dev/null >/dev/null 2>&1
unset kvc_host_pid
eval "$KVC_SANDBOX_AGENT"
"""
_fstab_lock = threading.Lock()
_fstab_fd: int | None = None


def _fstab() -> int:
    """A memfd holding FSTAB (one per process, kept open): each `mount -a` opens it anew by its path."""
    global _fstab_fd
    with _fstab_lock:
        if _fstab_fd is None:
            fd = os.memfd_create("kvc-sandbox-fstab")
            os.write(fd, FSTAB.encode())
            _fstab_fd = fd
        return _fstab_fd


_NAMESPACES = ("pid", "mnt", "net")


def _own_pid_namespace() -> tuple[int, int]:
    st = os.stat("/proc/self/ns/pid")
    return st.st_dev, st.st_ino


class ContainerError(RuntimeError):
    """The container's main process could not start."""


class NotRunning(RuntimeError):
    """The container's main process is gone (or not started): nothing can run in it."""


def exec_argv(fds: list[int] | tuple[int, ...], argv: list[str]) -> list[str]:
    """The command line that runs `argv` in the namespaces `enter()` opened (pass `fds` as pass_fds)."""
    pid_fd, mnt_fd, net_fd = fds
    return ["nsenter", f"--pid=/proc/self/fd/{pid_fd}", f"--mount=/proc/self/fd/{mnt_fd}",
            f"--net=/proc/self/fd/{net_fd}", "--", *argv]


def kill_exec(pid: int) -> None:
    """SIGKILL the command that `nsenter` (host pid `pid`, started with `exec_argv`) runs in a container;
    `nsenter` then dies of the same signal. The command first: an `nsenter` killed first would leave its
    child to the host's init, which may reap it late, and a container's PID 1 only finishes exiting once
    every process of its namespace is reaped. Before `nsenter` forked, it is killed itself."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    for target in children or [pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ContainerProcess:
    """One container's main process; see the module docstring."""

    def __init__(self, popen: subprocess.Popen, netns: str, name: str) -> None:
        self.netns = netns
        self.name = name
        self.pid1: int | None = None  # host pid of the container's PID 1, once ready
        self._popen = popen
        self._pidfd: int | None = os.pidfd_open(popen.pid)  # of `unshare`, our child
        self._pid1fd: int | None = None
        self._exit: asyncio.Future[int] | None = None

    @classmethod
    def spawn(cls, netns: str, name: str = "") -> "ContainerProcess":
        """Start the main process in `netns` (not ready yet: await `ready()`). OSError if it cannot start."""
        popen = subprocess.Popen(
            ["nsenter", f"--net={os.path.join(NETNS_DIR, netns)}", "--",
             "unshare", "--pid", "--mount", "--fork", "--kill-child", "--", "sh", "-c", PRELUDE, "agent"],
            stdin=_fstab(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/",
            env={**ENV, "KVC_SANDBOX_AGENT": agent_script()}, start_new_session=True)
        try:
            return cls(popen, netns, name)
        except OSError:
            popen.kill()
            popen.wait()
            raise

    @property
    def pid(self) -> int:
        """Host pid of `unshare`, the process the sandbox started."""
        return self._popen.pid

    @property
    def exited(self) -> bool:
        return self._exit is not None and self._exit.done()

    async def ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until PID 1 announced itself; ContainerError (the process killed) if it did not in time."""
        loop = asyncio.get_running_loop()
        fd = self._popen.stdout.fileno()
        os.set_blocking(fd, False)
        output = bytearray()
        announced: asyncio.Future[int] = loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError as exc:
                chunk = b""
                output.extend(f"[{exc}]".encode())
            output.extend(chunk)
            for line in output.split(b"\n")[:-1]:
                if line.startswith(READY.encode() + b" ") and line[len(READY) + 1:].isdigit():
                    if not announced.done():
                        announced.set_result(int(line[len(READY) + 1:]))
                    return
            if not chunk and not announced.done():
                announced.set_exception(ContainerError(
                    f"container {self.name}: the main process ended before it was ready: "
                    f"{output.decode(errors='replace').strip() or 'no output'}"))

        loop.add_reader(fd, readable)
        try:
            pid1 = await asyncio.wait_for(announced, timeout)
            self._adopt(pid1)
        except asyncio.TimeoutError:
            self.kill()
            raise ContainerError(f"container {self.name}: not ready after {timeout}s: "
                                 f"{output.decode(errors='replace').strip() or 'no output'}") from None
        except BaseException:
            self.kill()
            raise
        finally:
            loop.remove_reader(fd)

    def _adopt(self, pid1: int) -> None:
        """Check that `pid1` is the child of our `unshare`, and hold a pidfd of it."""
        try:
            pidfd = os.pidfd_open(pid1)
            fields = Path(f"/proc/{pid1}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError as exc:
            raise ContainerError(f"container {self.name}: PID 1 ({pid1}) is gone: {exc}") from None
        if int(fields[1]) != self._popen.pid or fields[0] == "Z":
            os.close(pidfd)
            raise ContainerError(f"container {self.name}: pid {pid1} is not the main process it announced")
        self._pid1fd, self.pid1 = pidfd, pid1

    def enter(self) -> list[int]:
        """The container's pid, mount and net namespaces as open fds (close them after use). NotRunning if
        the main process is gone: then nothing was opened."""
        if self._pid1fd is None or self.exited:
            raise NotRunning(f"container {self.name} is not running")
        fds: list[int] = []
        try:
            for ns in _NAMESPACES:
                fds.append(os.open(f"/proc/{self.pid1}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
            # Alive after the opens: the pid named this very process while they happened.
            signal.pidfd_send_signal(self._pid1fd, 0)
            st = os.fstat(fds[0])
            if (st.st_dev, st.st_ino) == _own_pid_namespace():
                raise NotRunning(f"container {self.name}: refusing the sandbox's own PID namespace")
        except (OSError, NotRunning) as exc:
            for fd in fds:
                os.close(fd)
            if isinstance(exc, NotRunning):
                raise
            raise NotRunning(f"container {self.name} is not running ({exc})") from None
        return fds

    def kill(self, launcher: bool = False) -> None:
        """SIGKILL PID 1, and with it its whole PID namespace; `unshare` reaps it and ends the same way.
        Before PID 1 is known, or with `launcher`, `unshare` too (its --kill-child then ends PID 1, which
        the host's init reaps). Idempotent."""
        for fd in (self._pid1fd, self._pidfd if launcher or self._pid1fd is None else None):
            if fd is not None:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    async def wait(self) -> int:
        """Wait for the main process to end, reap it; its exit code. A PID 1 killed by signal S (only
        possible from outside: inside its namespace, signals it does not handle are ignored) is 128 + S
        with util-linux 2.39+, whose `unshare` dies of the same signal, 1 with older ones."""
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            loop.add_reader(self._pidfd, self._on_exit)
        return await asyncio.shield(self._exit)

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        code = self._popen.wait()  # at once: the pidfd said it exited
        for fd in (self._pidfd, self._pid1fd):
            if fd is not None:
                os.close(fd)
        self._pidfd = self._pid1fd = None
        self._popen.stdout.close()
        code = 128 - code if code < 0 else code
        logger.debug("container {}: main process exited {}", self.name, code)
        if not self._exit.done():
            self._exit.set_result(code)
