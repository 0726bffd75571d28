"""How long two controller replicas take to hand over, on a sandbox (root).

    .venv/bin/python -m bench.takeover [--runs 3] [-- EXTRA RUN FLAGS]

Two `kube-vxlan-controller run` processes (client-go's default timings: lease 15 s, renew deadline
10 s, retry 2 s, unless extra flags say otherwise) on a fresh sandbox; the leader is stopped with
SIGTERM, then with SIGKILL, `--runs` times each. After each hand-over a new replica is started; the
next signal comes once it stands by and has seen a renewal since (a candidate that just started waits a
whole lease duration from its first look, as client-go's), at a random moment of the renewal period.
Times come from a watch of the Lease in this process (arrival times, `LeaseLog`):
- SIGTERM: signal → release (the leader first stops its tree; no pods here, so nothing is in flight),
  release → the standby holding the Lease;
- SIGKILL: kill → the standby holding the Lease, and the leader's last renewal → the standby holding it
  (bound: lease duration + retry period, from when the standby saw that renewal).
Prints one line per hand-over, then min / median / max. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch
from urllib3.exceptions import ProtocolError

from bench.cluster import SandboxServer
from bench.processes import Child

NAMESPACE, LEASE = "kube-system", "kube-vxlan-controller"


class LeaseLog:
    """Every version of the Lease, as a watch from this process delivers it, with its arrival time
    (`time.monotonic()`); a daemon thread until `stop()`."""

    def __init__(self, api_client, namespace: str = NAMESPACE, name: str = LEASE) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.seen: list[tuple[float, client.V1LeaseSpec]] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, name="lease-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self.api.list_namespaced_lease, self.namespace,
                                            field_selector=f"metadata.name={self.name}", timeout_seconds=3600):
                self.seen.append((time.monotonic(), event["object"].spec))
        except (ProtocolError, ValueError, AttributeError):
            pass  # stopped: the client raises one of these when its socket is shut under it

    def stop(self) -> None:
        self._watch.stop()

    def holder(self) -> str | None:
        return self.seen[-1][1].holder_identity if self.seen else None

    def first(self, holder: str, after: float = 0.0) -> tuple[float, client.V1LeaseSpec] | None:
        """The first version held by `holder` ("" for a released Lease) that arrived after `after`."""
        return next(((t, spec) for t, spec in list(self.seen) if t > after and spec.holder_identity == holder), None)

    def last(self, holder: str, before: float) -> tuple[float, client.V1LeaseSpec]:
        return [(t, spec) for t, spec in list(self.seen) if t < before and spec.holder_identity == holder][-1]


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.02)
    return value


class Replicas:
    """Controller processes named r1, r2, …; each logs to WORKDIR/NAME.log."""

    def __init__(self, workdir: Path, kubeconfig: Path, extra: list[str]) -> None:
        self.workdir, self.kubeconfig, self.extra = workdir, kubeconfig, extra
        self.running: dict[str, Child] = {}
        self.count = 0

    def start(self) -> str:
        self.count += 1
        name = f"r{self.count}"
        self.running[name] = Child(name, ["kube-vxlan-controller", "run", "--kubeconfig", str(self.kubeconfig),
                                          "--namespace", NAMESPACE, "--identity", name, "--admin", "",
                                          "--health", "", *self.extra], log=self.workdir / f"{name}.log").start()
        return name

    def standing_by(self, name: str) -> None:
        wait(lambda: "leader is" in (self.workdir / f"{name}.log").read_text(), 60, f"{name} standing by")

    def stop(self) -> None:
        for child in self.running.values():
            child.stop()


def measure(runs: int, extra: list[str], workdir: Path) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"SIGTERM: signal → release": [], "SIGTERM: release → standby leads": [],
                                       "SIGKILL: kill → standby leads": [],
                                       "SIGKILL: last renewal → standby leads": []}
    sandbox = SandboxServer(workdir).start()
    api_client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    lease = LeaseLog(api_client)
    replicas = Replicas(workdir, sandbox.kubeconfig, extra)
    try:
        for _ in range(2):
            replicas.start()
        for _ in range(runs):
            for signum in (signal.SIGTERM, signal.SIGKILL):
                leader = wait(lambda: lease.holder() in replicas.running and lease.holder(), 60, "leader")
                (standby,) = [name for name in replicas.running if name != leader]
                replicas.standing_by(standby)
                seen = time.monotonic()
                wait(lambda: lease.first(leader, after=seen), 60, "a renewal")
                time.sleep(random.uniform(0, 2.0))  # not a synchronisation: a random phase of the renewals
                sent = time.monotonic()
                replicas.running[leader].proc.send_signal(signum)
                taken = wait(lambda: lease.first(standby, after=sent), 60, f"{standby} leading")
                code = replicas.running.pop(leader).proc.wait(30)  # signalled once: a second TERM could land
                # while the interpreter exits, when Python has put the default handlers back
                if signum == signal.SIGTERM:
                    released = lease.first("", after=sent)
                    figures["SIGTERM: signal → release"].append(released[0] - sent)
                    figures["SIGTERM: release → standby leads"].append(taken[0] - released[0])
                    print(f"SIGTERM: {leader} released the Lease {released[0] - sent:.3f}s after the signal, "
                          f"{standby} led {taken[0] - released[0]:.3f}s after the release; {leader} exited {code}")
                else:
                    renewed = lease.last(leader, before=sent)
                    figures["SIGKILL: kill → standby leads"].append(taken[0] - sent)
                    figures["SIGKILL: last renewal → standby leads"].append(taken[0] - renewed[0])
                    print(f"SIGKILL: {standby} led {taken[0] - sent:.2f}s after {leader} was killed, "
                          f"{taken[0] - renewed[0]:.2f}s after its last renewal")
                replicas.start()
    finally:
        replicas.stop()
        lease.stop()
        api_client.close()
        sandbox.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="hand-overs of each kind (default: %(default)s)")
    p.add_argument("extra", nargs="*", help="more flags for `kube-vxlan-controller run` (after --)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvc-takeover-") as workdir:
        figures = measure(args.runs, args.extra, Path(workdir))
    for what, values in figures.items():
        print(f"{what}: min {min(values):.3f}s, median {statistics.median(values):.3f}s, max {max(values):.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
