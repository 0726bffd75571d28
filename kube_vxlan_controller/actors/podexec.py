"""What a pod actor runs in its pod: setup and release, fdb sync, inspect — plain functions, no state.

Each takes a `PodExec` (the executor bound to one pod), runs one or more execs, and returns what it
learnt, or raises: `ExecFailed` (a command exited with a code it should not), the executor's k8s errors
(`PodGone`, `ExecTimeout`, `Forbidden`, …), `agent.AgentOutputError`. Sorting those into retry, wait
or give up, backoff, states and readiness are the pod actor's business, not this module's.

Exec counts per operation (what the benchmarks count):
- setup of a pod nobody set up: 1 (`setup_release_argv` with the absence check); when a link exists
  already: 1 more to read the links, then 1 to set up and release; with no network: the release only;
- fdb sync: 1 batch when something differs; +1 read when the fdb is not known (after a resync, a failure,
  or when this actor did not create the interfaces); +1 link read once, when this actor did not set the
  pod up itself (which interfaces to keep);
- inspect: 1 read.

Concurrency contract: runs on the calling actor's thread; blocks for each exec (slot wait plus at most
the executor's deadline).
"""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger

from .. import agent
from ..k8s.errors import PodGone
from ..k8s.execs import OK
from ..model import ExecResult, Pod
from ..options import NetworkSpec


class ExecFailed(Exception):
    def __init__(self, container: str, argv: list[str], result: ExecResult) -> None:
        self.container, self.argv, self.result = container, argv, result
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")[:500]
        super().__init__(f"container {container}: `{' '.join(argv)}` exited {result.exit_code}: {detail}")


@dataclass(slots=True)
class PodExec:
    """The executor bound to one pod: `run(container, argv)` with the pod's name, counting execs.

    `suspect`: the pod's last exec timed out, so its execs use the executor's few suspect slots."""

    executor: object
    pod: Pod
    suspect: bool = False
    count: int = 0

    def run(self, container: str, argv: list[str], stdin: str | None = None, ok: frozenset[int] = OK) -> ExecResult:
        self.count += 1
        result = self.executor.run(self.pod.namespace, self.pod.name, container, argv, stdin=stdin,
                                   suspect=self.suspect, ok=ok)
        if result.exit_code not in ok:
            raise ExecFailed(container, argv, result)
        return result


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    #: interfaces this setup made or kept (their fdb is kept); None: unknown (half applied, read later)
    managed: frozenset[str] | None
    #: the fdb of every managed interface is known to be empty (all were created just now)
    fresh: bool
    conflicts: tuple[str, ...] = ()
    #: the setup batch failed and the init agent was released anyway (the last attempt)
    gave_up: ExecFailed | None = None


def setup_and_release(run: PodExec, specs: tuple[NetworkSpec, ...], *, container: str, terminate_file: str,
                      timeout: int, last_attempt: bool) -> SetupOutcome:
    """Create/configure the pod's VXLAN interfaces, then release the init agent (see `agent`).

    A failed batch raises `ExecFailed` and leaves the init agent running (the caller retries), except on
    the `last_attempt`: then the init agent is released anyway and the failure is in `gave_up`."""
    links: dict | None = None  # None: assumed absent, checked by the exec itself
    while True:
        argv, batch = agent.setup_exec(specs, links, timeout=timeout, terminate_file=terminate_file,
                                       underlay=run.pod.ip)
        if batch is None:
            _release(run, container, terminate_file)
            break
        accepted = agent.RELEASED_CODES | ({agent.LINKS_EXIST} if links is None else set())
        try:
            result = run.run(container, argv, stdin=batch, ok=accepted)
        except ExecFailed as error:
            if not last_attempt:
                raise
            _release(run, container, terminate_file)
            return SetupOutcome(None, False, agent.setup_conflicts(specs, links or {}), gave_up=error)
        except PodGone:
            return SetupOutcome(None, False)  # the init agent is gone: released, how far setup got unknown
        if result.exit_code != agent.LINKS_EXIST:
            break
        # A setup may have happened before: the long way, against the links as they are.
        links = agent.parse_links(run.run(container, agent.LINKS_ARGV).stdout)
    links = links or {}
    names = tuple(spec.name for spec in specs)
    managed = frozenset(n for n in names if n not in links or links[n].kind == "vxlan")
    return SetupOutcome(managed, not links, agent.setup_conflicts(specs, links))


def _release(run: PodExec, container: str, terminate_file: str) -> None:
    """Release the init agent; it is released when the exec says so or the container is gone."""
    try:
        run.run(container, agent.release_argv(terminate_file), ok=agent.RELEASED_CODES)
    except PodGone:
        pass


def managed_interfaces(run: PodExec, specs: tuple[NetworkSpec, ...], *, container: str) -> frozenset[str]:
    """For a pod this actor did not set up (a restarted controller, a half-failed setup): the VXLAN links
    of its networks that exist with the right VNI. A network that became valid after setup (its id
    added to the ConfigMap later) gets no fdb until the pod is set up again."""
    links = agent.parse_links(run.run(container, agent.LINKS_ARGV).stdout)
    return frozenset(spec.name for spec in specs if spec.name in links
                     and links[spec.name].kind == "vxlan" and links[spec.name].vni == spec.vni)


def sync_fdb(run: PodExec, desired: dict[str, frozenset[str]], observed: dict[str, frozenset[str]] | None, *,
             container: str, timeout: int, networks: dict[str, str]) -> dict[str, frozenset[str]]:
    """Make the pod's all-zeros fdb entries on the `desired` devices exactly the desired peers; returns
    the fdb as it now is (reads it first when `observed` is None). `networks`: device → network name,
    for the log. On a failed batch the fdb is unknown: the exception propagates, the caller forgets."""
    pod = run.pod
    if observed is None:
        observed = agent.parse_fdb(run.run(container, agent.FDB_ARGV).stdout)
    diff = agent.fdb_diff(desired, observed)
    for dev, ip in diff.invalid:
        logger.error("pod {}: not adding peer {!r} on {!r}: not a valid device/address", pod.key, ip, dev)
    if diff.empty:
        return observed
    run.run(container, agent.batch_argv("bridge", timeout), stdin=diff.batch())
    for dev, ip in diff.add:
        logger.info("pod {} network {}: fdb += {} on {}", pod.key, networks.get(dev, "?"), ip, dev)
    for dev, ip in diff.delete:
        logger.info("pod {} network {}: fdb -= {} on {}", pod.key, networks.get(dev, "?"), ip, dev)
    return {**observed, **desired}


def read_fdb(run: PodExec, *, container: str) -> tuple[dict[str, frozenset[str]], dict[str, list[str]]]:
    """A fresh read of the pod's fdb: (parsed, device → lines as `bridge fdb show` prints them)."""
    stdout = run.run(container, agent.FDB_ARGV).stdout
    return agent.parse_fdb(stdout), agent.fdb_lines(stdout)
