"""The scenarios: what the bench does to the cluster and which figures it reads, the same for every contestant.

Each scenario says its networks (the ConfigMap), the exec latency the sandbox injects, the oracle's first
wave (`expect`), and what the minimal exec set is for it (`minimal`, printed with the figures);
`drive(run)` does the work on a started `Run` (run.py) and returns the scenario's own figures. Times are
the kernel's (when the poller read the entry), relative to the moment the bench started the work.

- burst: 0 → N pods created at once; seconds until every fdb is exact.
- joins: N − K pods wired, then K pods join one at a time (each wired before the next): seconds and
  execs per join.
- churn: N pods wired, then R creations and R deletions per second for S seconds: join lag (sidecar
  running → every peer has the pod) and leave lag (deletion asked → no peer has it), see wiring.py.
  Paced by what the sandbox achieves: at most a second's worth of creations on their way, deletions
  only while N pods run their sidecar; the achieved rates are in the figures.
- idle: N pods on M networks wired, then S seconds of steady state: the contestant's CPU and RSS (what
  its resync costs), and the execs it runs meanwhile.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import ClassVar

from bench.processes import machine_busy_seconds
from bench.run import SETTLE, TICK

NETWORK = "vxeth0"
ONE_NETWORK = {NETWORK: "id=100 up"}


def percentiles(values: list[float]) -> dict:
    """n, p50, p99 and max (nearest rank), rounded to milliseconds; only n when there are none."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(round(q * len(ordered), 9)) - 1)], 3)

    return {"n": len(ordered), "p50": rank(0.50), "p99": rank(0.99), "max": round(ordered[-1], 3)}


def _seconds(done: float | None, start: float) -> float | None:
    return None if done is None else round(max(0.0, done - start), 3)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """What every scenario says; subclasses add their sizes and `name`, `minimal`, `drive`."""

    kind: ClassVar[str] = ""
    #: the network ConfigMap's data
    configmap: ClassVar[dict[str, str]] = ONE_NETWORK
    #: the oracle's coalescing window (oracle.py `--coalesce`)
    coalesce: ClassVar[float] = 0.0
    #: seconds the sandbox adds before every exec
    latency: float = 0.0
    #: seconds any one wait for wiring may take before the run is given up as not converged
    timeout: float = 600.0

    @property
    def expect(self) -> int:
        """Pods of the oracle's first wave."""
        return self.pods

    def wire(self, run, count: int, network=lambda i: NETWORK) -> float | None:
        """Create `count` pods at once; the kernel's time at which all were wired (None: timed out)."""
        run.api.create([(f"p{i}", network(i)) for i in range(count)])
        return run.wait_wired(count, self.timeout)

    def burst(self, run, network=lambda i: NETWORK) -> dict:
        """0 → `pods` at once, measured: seconds until all are wired, and the execs that took; and when
        the last sidecar ran, which splits the time into starting the pods (each waits for its setup
        exec) and wiring them once all run."""
        before, busy_before, start = run.execs(), machine_busy_seconds(), run.mark()
        done = self.wire(run, self.pods, network)
        running, busy = run.wiring.last_running(), machine_busy_seconds() - busy_before
        run.hold(SETTLE)
        return {"converged": done is not None, "seconds": _seconds(done, start), "pods": self.pods,
                "running_seconds": _seconds(running, start), "machine_cpu_seconds": round(busy, 2),
                "execs": run.execs() - before}


@dataclass(frozen=True)
class Burst(Scenario):
    pods: int
    kind = "burst"

    @property
    def name(self) -> str:
        return f"burst 0→{self.pods}, {self.latency * 1000:.0f} ms"

    @property
    def minimal(self) -> str:
        return f"2 per pod (setup and release in one exec, one fdb batch once all run): {2 * self.pods}"

    def drive(self, run) -> dict:
        return self.burst(run)


@dataclass(frozen=True)
class Joins(Scenario):
    into: int = 100
    joins: int = 20
    kind = "joins"

    @property
    def name(self) -> str:
        return f"joins {self.expect}→{self.into}, one at a time"

    @property
    def expect(self) -> int:
        return self.into - self.joins

    @property
    def minimal(self) -> str:
        return ("2 + n per join into n members (setup and release, the newcomer's batch, one append in each "
                f"member): {sum(2 + self.expect + k for k in range(self.joins))} for the {self.joins} joins")

    def drive(self, run) -> dict:
        base = self.expect
        if self.wire(run, base) is None:
            return {"converged": False, "joins": []}
        run.hold(SETTLE)
        run.mark()
        joins = []
        for k in range(self.joins):
            name, before, start = f"j{k}", run.execs_by_pod(), time.monotonic()
            run.api.create([(name, NETWORK)])
            done = run.wait_wired(base + k + 1, self.timeout)
            run.hold(0.5)  # what the join still sets off is the join's
            after = run.execs_by_pod()
            execs = sum(after.values()) - sum(before.values())
            newcomer = after.get(name, 0) - before.get(name, 0)
            joins.append({"members": base + k, "seconds": _seconds(done, start), "execs": execs,
                          "execs_newcomer": newcomer, "execs_members": execs - newcomer, "minimal": 2 + base + k})
            if done is None:
                break
        seconds = [j["seconds"] for j in joins if j["seconds"] is not None]
        return {"converged": len(seconds) == self.joins, "joins": joins, "per_join": percentiles(seconds),
                "seconds": percentiles(seconds).get("p50"), "execs": sum(j["execs"] for j in joins),
                "pods": self.joins}


@dataclass(frozen=True)
class Churn(Scenario):
    pods: int = 200
    rate: float = 20.0
    seconds: float = 60.0
    drain: float = 30.0
    seed: int = 9
    kind = "churn"
    #: the controller's default `--coalesce`
    coalesce = 0.1

    @property
    def name(self) -> str:
        return f"churn {self.pods} pods, {self.rate:g}+{self.rate:g}/s for {self.seconds:g}s"

    @property
    def minimal(self) -> str:
        return ("per creation: setup and release, its own batch (2); per member, one fdb exec at a time, sent "
                f"{self.coalesce:g}s after the first peer change (the controller's default --coalesce) with "
                "every join and leave gathered until then; no reads (one exec per member per join and per "
                f"leave would be {int(2 * self.rate * self.pods)} execs/s)")

    def drive(self, run) -> dict:
        if self.wire(run, self.pods) is None:
            return {"converged": False}
        run.hold(SETTLE)
        run.wiring.track_events = True
        rng = random.Random(self.seed)
        before, start = run.execs(), run.mark()
        creations, deletions, ran = [], [], set()
        last_tick = 0.0
        for i in range(int(self.rate * self.seconds)):
            due = start + i / self.rate
            while (now := time.monotonic()) < due:
                if now - last_tick >= TICK:
                    run.tick(f"  pending {run.wiring.pending_events()}  created {len(creations)}  "
                             f"deleted {len(deletions)}")
                    last_tick = now
                time.sleep(min(TICK, max(0.0, due - time.monotonic())))
            members = run.wiring.members()
            ran |= {pod.name for pod in members if pod.name.startswith("c")}
            failed = sum(1 for call in creations if call.done() and call.exception() is not None)
            # Paced by what the sandbox achieves: at most a second's worth of creations on their way,
            # and a deletion only while the members (sidecar running) are N or more.
            if len(creations) - len(ran) - failed < self.rate:
                creations.append(run.api.submit(run.api.create_one, f"c{i}", NETWORK))
            candidates = sorted(run.wiring.settled(), key=lambda pod: pod.name)
            if len(members) >= self.pods and candidates:
                victim = rng.choice(candidates)
                run.wiring.leaving(victim.uid, time.monotonic())
                deletions.append(run.api.submit(run.api.delete_one, victim.name))
        elapsed = time.monotonic() - start
        failed = sum(1 for call in creations + deletions if call.exception() is not None)
        end = time.monotonic() + self.drain
        while run.wiring.pending_events() and time.monotonic() < end:
            run.tick(f"  pending {run.wiring.pending_events()}")
            time.sleep(TICK)
        run.tick()
        wiring = run.wiring
        return {
            "converged": wiring.pending_events() == 0,
            "creations_per_second": round(len(creations) / elapsed, 1),
            "deletions_per_second": round(len(deletions) / elapsed, 1), "failed_requests": failed,
            "join_lag": percentiles([lag for _, lag in wiring.join_lags]),
            "leave_lag": percentiles([lag for _, lag in wiring.leave_lags]),
            "unfinished": wiring.pending_events(), "abandoned_joins": wiring.abandoned_joins,
            "unwired_leaves": wiring.unwired_leaves,
            "lags": {"join": [(round(t - start, 3), round(lag, 3)) for t, lag in wiring.join_lags],
                     "leave": [(round(t - start, 3), round(lag, 3)) for t, lag in wiring.leave_lags]},
            "execs": run.execs() - before, "pods": len(creations) + len(deletions),
        }


@dataclass(frozen=True)
class Idle(Scenario):
    pods: int = 1000
    networks: int = 10
    #: the steady window; None: the contestant's own --resync (contestants.py), so that it holds each pod's
    #: periodic re-read exactly once whatever their phases (a pod's re-reads are one --resync apart, its
    #: first within one of its start; a shorter window right after wiring catches their first wave or misses it)
    seconds: float | None = None
    #: the oracle does nothing once everything is written (no resync): a shorter window shows it
    oracle_seconds: float = 10.0
    timeout: float = field(default=900.0, kw_only=True)
    kind = "idle"

    @property
    def configmap(self) -> dict[str, str]:
        return {f"net{i}": f"id={200 + i} up" for i in range(self.networks)}

    @property
    def name(self) -> str:
        return f"idle {self.pods} pods, {self.networks} nets"

    @property
    def minimal(self) -> str:
        return f"2 per pod to wire them: {2 * self.pods}; none in steady state"

    def drive(self, run) -> dict:
        figures = self.burst(run, network=lambda i: f"net{i % self.networks}")
        if not figures["converged"]:
            return figures
        if run.contestant.resync is None:  # the oracle never re-reads: a short window shows it
            window = min(self.seconds or self.oracle_seconds, self.oracle_seconds)
        else:
            window = self.seconds or run.contestant.resync
        usage, execs, steady_start = run.child.usage(), run.sandbox.execs(), time.monotonic()
        run.hold(window)
        run.sampler.sample()
        after, execs_after = run.child.usage(), run.sandbox.execs()
        rss = [u.rss_bytes for t, u in run.sampler.samples if t >= steady_start]
        return {**figures,
                "steady": {"seconds": window, "cpu_seconds": round(after.cpu_seconds - usage.cpu_seconds, 2),
                           "cpu_percent": round(100 * (after.cpu_seconds - usage.cpu_seconds) / window, 1),
                           "execs": execs_after["total"] - execs["total"],
                           "rss_max_mb": round(max(rss, default=0) / 2**20, 1),
                           "open_execs_start": execs["open"], "open_execs_end": execs_after["open"],
                           "open_execs_peak": execs_after["most_open"]}}
