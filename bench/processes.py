"""The bench's child processes: each in a session of its own, stopped as a group, measured from /proc.

    child = Child("controller", argv, log=path).start()
    child.usage()        # Usage(rss_bytes, cpu_seconds) of its process group
    child.stop()         # SIGTERM (to the group), SIGKILL to the group after the grace; idempotent

A child has its own session, so Ctrl-C in the terminal reaches only the bench, which then stops its
children in order (finally blocks): the contender before the sandbox, the sandbox last, since it removes
the network namespaces. `Sampler` reads a child's usage every few seconds on a thread (max RSS, CPU).

Usage is of the process group (the child and what it started without a session of its own): resident
memory summed over the group's live processes, CPU time of the live ones plus what the leader reaped.
Reading it scans /proc, a few milliseconds for a few thousand processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def child_env() -> dict[str, str]:
    """The environment of every child: this interpreter's bin directory first on PATH (the venv's console
    scripts, `kube-vxlan-controller`, `kube-vxlan-sandbox`), unbuffered Python output for the logs."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True, slots=True)
class Usage:
    rss_bytes: int = 0
    cpu_seconds: float = 0.0


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on: the name may hold spaces


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot, all cores (/proc/stat: every state but idle and
    iowait): the processes a scenario starts and ends (execs, a pod's commands) and the kernel's own work
    for it (network namespaces, links) included, which no process group's usage holds."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def group_usage(pgid: int) -> Usage:
    """Memory and CPU of the process group `pgid` now (see the module docstring)."""
    rss = 0
    cpu_ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        # fields[2] is the process group; utime, stime, cutime, cstime are fields[11:15]; rss pages fields[21]
        if fields is None or int(fields[2]) != pgid:
            continue
        cpu_ticks += int(fields[11]) + int(fields[12])
        if int(entry) == pgid:
            cpu_ticks += int(fields[13]) + int(fields[14])
        rss += int(fields[21]) * _PAGE
    return Usage(rss, cpu_ticks / _TICK)


class Child:
    """One child process in its own session, its output in a log file."""

    def __init__(self, name: str, argv: list[str], *, log: Path, stdin=None, stdout=None,
                 grace: float = 10.0, env: dict[str, str] | None = None, term_group: bool = True) -> None:
        """`term_group`: SIGTERM goes to the whole group (a wrapper and what it runs), else to the child
        alone (a child that cleans up after itself and whose own helpers must not die under it)."""
        self.name, self.argv, self.log_path, self.grace = name, list(argv), Path(log), grace
        self.term_group = term_group
        self.env = {**child_env(), **(env or {})}
        self._stdin, self._stdout = stdin, stdout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=self._stdin if self._stdin is not None else subprocess.DEVNULL,
                stdout=self._stdout if self._stdout is not None else log, stderr=log, cwd=ROOT,
                env=self.env, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def usage(self) -> Usage:
        return group_usage(self.pid) if self.alive() else Usage()

    def stop(self) -> int | None:
        """SIGTERM (to the group, see `term_group`), SIGKILL to the group after the grace; the exit code
        (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if self.term_group:
                self._signal(signal.SIGTERM)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} did not stop within {self.grace:.0f}s of SIGTERM: SIGKILL",
                      file=sys.stderr)
                self._signal(signal.SIGKILL)
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        return code

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass


class Sampler:
    """Samples a child's usage every `interval` seconds on a thread, from `start()` to `stop()`."""

    def __init__(self, child: Child, interval: float = 2.0) -> None:
        self.child, self.interval = child, interval
        self.samples: list[tuple[float, Usage]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{child.name}", daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> Usage:
        usage = self.child.usage()
        if usage.rss_bytes:
            self.samples.append((time.monotonic(), usage))
        return usage

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sample()

    @property
    def max_rss_mb(self) -> float:
        return max((u.rss_bytes for _, u in self.samples), default=0) / 2**20

    @property
    def cpu_seconds(self) -> float:
        return max((u.cpu_seconds for _, u in self.samples), default=0.0)
