"""One contestant (a contender or an oracle) on one fresh sandbox: every process of a measurement.

    with Run(scenario, contestant, workdir, label) as run:
        run.mark()                          # t = 0 of the figures and the timeline
        run.api.create([...])
        run.wait_wired(n)                   # the kernel's time at which n pods were wired, or None
        figures = run.figures()

Processes, each in its own session (processes.py): the sandbox (`kube-vxlan-sandbox serve`, netns
runtime; over HTTPS with `tls`), the poller (poller.py), the contestant. The bench's own process watches pods and compares
(wiring.py). Entering starts them in that order and waits until the contestant opened its first watch
(the sandbox counts open watches), so its start-up is not measured; leaving stops them in reverse order
— also on an error or Ctrl-C — the sandbox last, which removes every namespace it made.

Execs are the sandbox's count (`GET /sandbox/stats`), the same for every contestant.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from bench.cluster import Api, PodTracker, SandboxServer
from bench.poller import FdbPoller
from bench.processes import Child, Sampler
from bench.wiring import Wiring

#: seconds between two comparisons of the fdbs with the membership (the figures do not depend on it).
TICK = 0.2
#: seconds between two progress lines.
PROGRESS = 3.0
#: after convergence, execs still running or about to are counted: wait this long before reading the count.
SETTLE = 1.0


class Run:
    def __init__(self, scenario, contestant, workdir: Path, label: str, nodes: int = 1, tls: bool = False) -> None:
        self.scenario, self.contestant, self.workdir, self.label = scenario, contestant, workdir, label
        self.nodes, self.tls = nodes, tls
        workdir.mkdir(parents=True, exist_ok=True)
        self.wiring = Wiring()
        self.timeline: list[tuple[float, int, int]] = []
        self.t0 = time.monotonic()
        self._marked = False
        self._last_progress = 0.0
        self._exits = contextlib.ExitStack()
        self._cpu0 = time.process_time()
        self.child: Child | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> "Run":
        try:
            self._start()
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._exits.close()

    def _start(self) -> None:
        # Each stop is registered before its start: whatever started is stopped, even a half start.
        self.sandbox = SandboxServer(self.workdir, self.nodes, self.tls)
        self._exits.callback(self.sandbox.stop)
        self.sandbox.start()
        self.sandbox.faults(exec_latency=self.scenario.latency)
        self.api = Api(self.sandbox.kubeconfig)
        self._exits.callback(self.api.close)
        self.api.configmap(self.scenario.configmap)
        self.poller = FdbPoller(self.wiring, log=self.workdir / "poller.log")
        self._exits.callback(self.poller.stop)
        self.poller.start()
        self.tracker = PodTracker(self.sandbox, self.wiring, self.poller, self.scenario.configmap)
        self._exits.callback(self.tracker.stop)
        self.tracker.start()
        baseline = self._wait_watches(lambda n: n >= 1, "the bench's own pod watch")
        argv = self.contestant.argv(self.sandbox.kubeconfig, self.scenario)
        self.child = Child(self.contestant.name, argv, log=self.workdir / f"{self.contestant.name}.log")
        self._exits.callback(self.child.stop)
        self.child.start()
        self._wait_watches(lambda n: n > baseline, f"the {self.contestant.name} to watch pods")
        # A controller opens more than one watch (pods, its ConfigMap): wait until they stop coming.
        seen, quiet_since = self.sandbox.stats()["watches"], time.monotonic()
        while time.monotonic() - quiet_since < 1.0:
            time.sleep(0.1)
            now = self.sandbox.stats()["watches"]
            if now != seen:
                seen, quiet_since = now, time.monotonic()
        self.sampler = Sampler(self.child)
        self._exits.callback(self.sampler.stop)
        self.sampler.start()

    def _wait_watches(self, ready, what: str, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            if self.child is not None and not self.child.alive():
                raise RuntimeError(f"the {self.contestant.name} exited {self.child.proc.returncode} before "
                                   f"watching; see {self.child.log_path}")
            watches = self.sandbox.stats()["watches"]
            if ready(watches):
                return watches
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: no watch after {timeout:.0f}s")
            time.sleep(0.05)

    # -- measuring -------------------------------------------------------------------------------------
    def mark(self) -> float:
        """Time zero of this run's figures and timeline."""
        self.t0, self._marked = time.monotonic(), True
        return self.t0

    def execs(self) -> int:
        """Execs the sandbox accepted so far."""
        return self.sandbox.execs()["total"]

    def execs_by_pod(self) -> dict[str, int]:
        """Execs the sandbox accepted so far, by pod name (the bench's pods share one namespace)."""
        return {key.partition("/")[2]: n for key, n in self.sandbox.execs()["by_pod"].items()}

    def tick(self, extra: str = ""):
        """Compare once, extend the timeline, and print a progress line every few seconds."""
        now = time.monotonic()
        count = self.wiring.evaluate(now)
        if self._marked:
            self.timeline.append((round(now - self.t0, 3), count.wired, count.total))
        if now - self._last_progress >= PROGRESS:
            self._last_progress = now
            if not self.child.alive():
                raise RuntimeError(f"the {self.contestant.name} exited {self.child.proc.returncode}; "
                                   f"see {self.child.log_path}")
            print(f"  [{self.label}] {now - self.t0:6.1f}s  wired {count.wired}/{count.total}  "
                  f"execs {self.execs()}{extra}", file=sys.stderr, flush=True)
        return count

    def wait_wired(self, n: int, timeout: float) -> float | None:
        """Wait until `n` pods are alive and all wired; the kernel's time at which the last one became
        wired (monotonic clock), or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.tick()
            if count.total == n and count.wired == n:
                return count.last_wired
            if time.monotonic() > deadline:
                print(f"  [{self.label}] not wired after {timeout:.0f}s: {count.wired}/{count.total}",
                      file=sys.stderr, flush=True)
                return None
            time.sleep(TICK)

    def hold(self, seconds: float) -> None:
        """Keep comparing for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()
            time.sleep(min(TICK, max(0.0, end - time.monotonic())))

    def figures(self) -> dict:
        """What every run reports besides its scenario's own figures (read before leaving the run)."""
        stats = self.sandbox.execs()
        self.sampler.sample()
        verification = self.poller.verify()
        return {
            "name": self.contestant.name,
            "command": self.child.argv,
            "pid": self.child.pid,
            "sandbox_pid": self.sandbox.child.pid,
            "execs_total": stats["total"],
            "execs_by_container": stats["by_container"],
            "rss_max_mb": round(self.sampler.max_rss_mb, 1),
            "cpu_seconds": round(self.sampler.cpu_seconds, 2),
            "poller": {"pid": self.poller.child.pid, "cpu_seconds": round(self.poller.child.usage().cpu_seconds, 2),
                       **verification},
            "sandbox_cpu_seconds": round(self.sandbox.child.usage().cpu_seconds, 2),
            "bench_cpu_seconds": round(time.process_time() - self._cpu0, 2),
            "timeline": self.timeline,
        }
