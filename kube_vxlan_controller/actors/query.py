"""QueryActor: answers `inspect nets …` and `list pods [prefix]` for the admin endpoint.

`inspect` takes each network's membership from its network actor's snapshot and asks every pod in it
for a fresh read of its interfaces and fdb (one exec in the pod's sidecar agent, queued behind that pod's
own work), all in parallel, under one deadline: `net` is the interface as the kernel has it, `desired`
what its spec asks for, `differs` how they differ. A pod that does not answer in time (hung, or busy past the deadline)
is shown as such with its last known state from the board; it never stalls the answer. `list pods`
reads the board only.

Concurrency contract: owns nothing; blocks for at most `deadline` per question, waiting on futures of
network and pod actors — which never call back into it, so no deadlock is possible.
"""

from __future__ import annotations

import time

import pykka
from loguru import logger

from ..messages import Inspect, Snapshot
from .supervisor import child_failed


class QueryActor(pykka.ThreadingActor):
    def __init__(self, *, registry, board, deadline: float = 5.0, supervisor=None) -> None:
        super().__init__()
        self.registry, self.board, self.deadline, self.supervisor = registry, board, deadline, supervisor

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(child_failed("query", "inspect", exception_value, traceback))

    def inspect(self, nets: list[str]) -> list[dict]:
        started = time.monotonic()
        snapshots = {}
        networks = self.registry.networks()
        for net in nets:
            ref = networks.get(net)
            try:
                remaining = max(0.0, self.deadline - (time.monotonic() - started))
                snapshots[net] = ref.proxy().current().get(timeout=remaining) if ref else Snapshot(net, ())
            except (pykka.Timeout, pykka.ActorDeadError):
                snapshots[net] = None
        by_key = {state.pod_key: state for state in self.board.all()}
        asks = {}
        for net, snapshot in snapshots.items():
            for member in snapshot.members if snapshot else ():
                ref = self.registry.existing_pod(member.uid)
                if ref is not None and (member.uid not in asks):
                    try:
                        asks[member.uid] = ref.ask(Inspect(started + self.deadline), block=False)
                    except pykka.ActorDeadError:
                        pass
        answers = {}
        for uid, future in asks.items():
            remaining = max(0.0, self.deadline - (time.monotonic() - started))
            try:
                answers[uid] = future.get(timeout=remaining)
            except pykka.Timeout:
                answers[uid] = None
            except Exception as error:  # the pod actor answered with an error
                answers[uid] = error
        result = []
        for net in nets:
            snapshot = snapshots[net]
            entry = {"network": net, "members": [], "others": []}
            if snapshot is None:
                entry["error"] = f"network actor did not answer within {self.deadline:.0f}s"
            for member in snapshot.members if snapshot else ():
                state = self.board.get(member.uid)
                spec = next((s for s in state.networks if s.network == net), None) if state else None
                desired = spec.describe() if spec else ""
                row = {"pod": member.pod_key, "ip": member.ip, "interface": member.interface, "net": desired,
                       "desired": desired, "differs": [], "status": state.status if state else "unknown"}
                answer = answers.get(member.uid)
                if isinstance(answer, dict):
                    kernel = answer.get(member.interface, {"fdb": [], "net": "", "differs": ["no such interface"]})
                    row.update(fdb=kernel["fdb"], net=kernel["net"], differs=kernel["differs"])
                elif answer is None:
                    row["fdb"] = row["net"] = None
                    row["error"] = (f"no answer within {self.deadline:.0f}s (pod busy or hung"
                                    f"{': ' + state.error if state and state.error else ''})")
                else:
                    row["fdb"] = row["net"] = None
                    row["error"] = str(answer)
                entry["members"].append(row)
            members = {m.pod_key for m in snapshot.members} if snapshot else set()
            for key, state in sorted(by_key.items()):
                if key not in members and any(s.network == net for s in state.networks):
                    entry["others"].append({"pod": key, "ip": state.ip, "status": state.status,
                                            "error": state.error})
            result.append(entry)
        logger.debug("inspect {} answered in {:.2f}s", nets, time.monotonic() - started)
        return result

    def list_pods(self, prefix: str = "") -> list[dict]:
        rows = []
        for state in sorted(self.board.all(), key=lambda s: s.pod_key):
            name = state.pod_key.split("/", 1)[-1]
            if prefix and not (name.startswith(prefix) or state.pod_key.startswith(prefix)):
                continue
            for spec in state.networks:
                rows.append({"pod": state.pod_key, "network": spec.network,
                             "ip": str(spec.ip) if spec.ip else "", "status": state.status})
        return rows
