"""What a pod actor runs in its pod: setup and release, convergence, reads — plain functions, no state.

Each takes a `PodExec` (the executor bound to one pod), runs one or more execs, and returns what it
learnt, or raises: `ExecFailed` (a command exited with a code it should not), the executor's k8s errors
(`PodGone`, `ExecTimeout`, `Forbidden`, …), `agent.AgentOutputError`. Sorting those into retry, wait
or give up, backoff, states and readiness are the pod actor's business, not this module's.

Exec counts per operation (what the benchmarks count):
- setup of a pod nobody set up: 1 (`setup_release_argv` with the absence check); when a link exists
  already: 1 more to read the links, then 1 to set up and release; with no network: the release only;
- convergence (sidecar): 1 request when something differs — the fdb batch, or the link changes and the
  fdb batch together (`agent.converge_argv`); +1 read of links, routes and fdb together when the state is
  not known (after a resync, a failure, or when this actor did not create the interfaces);
- inspect: 1 read (the same).
A sidecar request is one exec with sessions off; with sessions on (`sidecar`), 0 over the pod's open
session, 1 when it opens one.

Concurrency contract: runs on the calling actor's thread; blocks for each exec (slot wait plus at most
the executor's deadline).
"""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger

from . import agent
from .agentsession import runs
from .k8s.errors import PodGone
from .k8s.execs import OK
from .model import ExecResult, Pod
from .options import NetworkSpec
from .sidecar import Sidecar, exec_form


class ExecFailed(Exception):
    def __init__(self, container: str, argv: list[str], result: ExecResult) -> None:
        self.container, self.argv, self.result = container, argv, result
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")[:500]
        super().__init__(f"container {container}: `{' '.join(argv)}` exited {result.exit_code}: {detail}")


@dataclass(slots=True)
class PodExec:
    """The executor bound to one pod: `run(container, argv)` with the pod's name, `ask(kind, …)` through its
    sidecar (`sidecar.Sidecar`: over its session, or one exec), counting execs.

    `suspect`: the pod's last exec timed out, so its execs use the executor's few suspect slots."""

    executor: object
    pod: Pod
    sidecar: Sidecar | None = None
    suspect: bool = False
    count: int = 0

    def run(self, container: str, argv: list[str], stdin: str | None = None, ok: frozenset[int] = OK) -> ExecResult:
        self.count += 1
        result = self.executor.run(self.pod.namespace, self.pod.name, container, argv, stdin=stdin,
                                   suspect=self.suspect, ok=ok)
        if result.exit_code not in ok:
            raise ExecFailed(container, argv, result)
        return result

    def ask(self, kind: str, *bodies: str) -> ExecResult:
        """A request of the sidecar (`agentsession.KINDS`); `ExecFailed` unless it exited 0."""
        result, execs = self.sidecar.ask(self.pod, kind, *bodies, suspect=self.suspect)
        self.count += execs
        if result.exit_code != 0:
            raise ExecFailed(self.sidecar.container, exec_form(kind, bodies, self.sidecar.timeout)[0], result)
        return result


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    #: interfaces this setup made or kept (their fdb is kept); None: unknown (half applied, read later)
    managed: frozenset[str] | None
    #: the pod's links and (empty) fdb as the setup left them, when all were created just now; else None
    state: agent.State | None
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
                                       pod_ips=run.pod.addresses)
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
            return SetupOutcome(None, None, agent.setup_conflicts(specs, links or {}), gave_up=error)
        except PodGone:
            return SetupOutcome(None, None)  # the init agent is gone: released, how far setup got unknown
        if result.exit_code != agent.LINKS_EXIST:
            break
        # A setup may have happened before: the long way, against the links as they are.
        links = agent.parse_links(run.run(container, agent.LINKS_ARGV).stdout)
    names = tuple(spec.name for spec in specs)
    if links is None:  # a pod nobody set up: every link was created just now, with no fdb entry
        after = agent.plan_links(specs, {}, pod_ips=run.pod.addresses).after
        return SetupOutcome(frozenset(names), agent.State(after, {name: frozenset() for name in after}) if after else None)
    managed = frozenset(n for n in names if n not in links or links[n].kind == "vxlan")
    return SetupOutcome(managed, None, agent.setup_conflicts(specs, links))


def _release(run: PodExec, container: str, terminate_file: str) -> None:
    """Release the init agent; it is released when the exec says so or the container is gone."""
    try:
        run.run(container, agent.release_argv(terminate_file), ok=agent.RELEASED_CODES)
    except PodGone:
        pass


def read_state(run: PodExec) -> agent.State:
    """A fresh read of what the pod's kernel holds: links, routes, fdb (`agent.STATE_ARGV`, by its sidecar)."""
    return agent.parse_state(run.ask("state").stdout)


@dataclass(frozen=True, slots=True)
class Converged:
    """What `converge` did: the pod's state as it now is, and what changed in its links."""

    state: agent.State
    links: agent.LinkPlan
    #: interfaces held by a link that is not vxlan (`agent.setup_conflicts`): neither changed nor kept
    conflicts: tuple[str, ...] = ()


def converge(run: PodExec, specs: tuple[NetworkSpec, ...], peers: dict[str, frozenset[str]],
             state: agent.State | None, *, named: tuple[str, ...]) -> Converged:
    """Make the pod's interfaces of the networks in `peers` (network → peer IPs) what their specs say, and
    their fdb hold exactly those peers, in one exec; remove the interfaces of networks no longer `named`
    (`agent.stale_links`). Reads the pod first when `state` is None. On a failed exec the state is
    unknown: the exception propagates, the caller forgets."""
    pod = run.pod
    if state is None:
        state = read_state(run)
    conflicts = agent.setup_conflicts(specs, state.links)
    wanted = tuple(spec for spec in specs if spec.network in peers)
    links = agent.plan_links(wanted, state.links, pod_ips=pod.addresses,
                             remove=agent.stale_links(state.links, specs, named))
    gone = links.replaced | set(links.removed)
    fdb = {dev: ips for dev, ips in state.fdb.items() if dev not in gone}
    desired = {spec.name: peers[spec.network] for spec in wanted if spec.name in links.after}
    diff = agent.fdb_diff(desired, fdb)
    for dev, ip in diff.invalid:
        logger.error("pod {}: not adding peer {!r} on {!r}: not a valid device/address", pod.key, ip, dev)
    if links.batch:
        run.ask("links", links.batch, diff.batch())
    elif not diff.empty:
        run.ask("fdb", diff.batch())
    networks = {spec.name: spec.network for spec in specs}
    for name in links.removed:
        logger.info("pod {}: interface {} removed: its network is no longer named", pod.key, name)
    for name, diffs in links.changed.items():
        how = "link replaced" if name in links.replaced else "changed in place"
        logger.info("pod {} network {}: interface {} {}: {}", pod.key, networks[name], name, how,
                    ", ".join(map(str, diffs)))
    # A line per interface and packed line's worth of peers (`agentsession.runs`), not a line per peer: one
    # per peer cost a burst of 200 pods 40 000 lines and 0.5-0.75 s of the controller's CPU at INFO
    # (docs/operating.md); a line stays under about 1.5 kB.
    for change, entries in (("+=", diff.add), ("-=", diff.delete)):
        for dev, ips in runs(entries):
            logger.info("pod {} network {}: fdb {} {} on {}", pod.key, networks.get(dev, "?"), change,
                        " ".join(ips), dev)
    kept = {name: link for name, link in state.links.items() if name not in links.removed}
    return Converged(agent.State({**kept, **links.after}, {**fdb, **desired}), links, conflicts)
