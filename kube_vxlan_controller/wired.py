"""The `vxlan.openvnf.org/Wired` pod condition: are all of a pod's VXLAN networks set up and wired to
every peer?

Pure code: the pod actor says what it knows after a pass (`Facts`), `judge` says what the condition is.
True (reason `Wired`) when every network the annotation names resolved, its interface exists with the
parameters its spec asks for (as the kernel reports them) and its fdb holds exactly the peers: packets can
pass. The message counts them per network: `vxeth1 3/3 peers, vxeth2 1/1`. False otherwise, with the first
reason that applies:

- a reason the controller cannot wire the pod at all (`eligibility.blocking`: no sidecar, no networks
  annotation, no valid network; its reason and message say what to do);
- `Failing`, `Hung`, `Forbidden`: the last pass failed (an exec failed, timed out, was denied); the
  message is the counts (`?` where the fdb is unknown) and the error;
- `NetworksInvalid`: the annotation names a network that did not resolve (the errors, as the Event says);
- `SetupFailed`: the setup batch failed on every attempt and the init agent was released anyway;
- `SettingUp`: the interfaces are not set up yet, the sidecar agent does not run yet, or a network has
  not published its members yet;
- `InterfaceMissing`: a network's interface is not there (a non-vxlan link holds its name);
- `InterfaceDiffers`: an interface's parameters differ from its network's (a VNI, port, address … change
  not yet converged: the message says what differs and what the controller does about it);
- `PeersMissing`: the fdb read or written last lacks peers, or holds entries of pods that are not peers.

When it is judged (the pod actor's business) matters as much: after each pass, against the peers that
pass synced to — the point where the fdb is known exact. A membership change does not make every member
False until its next sync (at most `--coalesce-max` later): used as a readiness gate, the condition must
not flap every member NotReady on every join. A sync that fails says so at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .model import Condition
from .options import NetworkSpec

CONDITION_TYPE = "vxlan.openvnf.org/Wired"
#: the reason while a pod is not set up, or its sidecar or its networks' members are not there yet
SETTING_UP = "SettingUp"
#: The API server refuses longer condition messages; ours are much shorter but for error texts.
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class Facts:
    """What the pod actor knows of its pod after a pass."""

    networks: tuple[NetworkSpec, ...]
    #: the annotation's errors (networks that did not resolve)
    invalid: tuple[str, ...] = ()
    #: (reason, message) of the reason the controller cannot wire the pod (`eligibility.blocking`)
    cause: tuple[str, str] | None = None
    #: (reason, error) when the last pass failed
    failure: tuple[str, str] | None = None
    #: the setup gave up (its error): the init agent was released without the interfaces as asked
    setup_failed: str | None = None
    #: interfaces whose fdb is kept (exist with the right VNI); None: not known yet
    managed: frozenset[str] | None = None
    agent_running: bool = False
    #: interface → all-zeros peers as last read or written (exact after a sync); None: unknown
    fdb: Mapping[str, frozenset[str]] | None = None
    #: network → the peers the last sync made its fdb hold (networks not synced yet are missing)
    peers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: network → how its interface differs from its spec in the kernel (`agent.differences`); absent: as asked
    differs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def judge(facts: Facts) -> Condition:
    """The Wired condition these facts make (see the module docstring)."""
    counts = _counts(facts)
    if facts.cause is not None:
        return _false(*facts.cause)
    if facts.failure is not None:
        reason, error = facts.failure
        return _false(reason, f"{counts}: {error}" if counts else error)
    if facts.invalid:
        return _false("NetworksInvalid", "; ".join(facts.invalid))
    if facts.setup_failed is not None:
        return _false("SetupFailed", f"setup gave up, the init agent was released anyway: {facts.setup_failed}")
    if not facts.networks:
        return Condition(True, "Wired", "no networks")
    if facts.managed is None:
        return _false(SETTING_UP, "waiting for the init agent to set up the interfaces")
    missing = [spec.name for spec in facts.networks if spec.name not in facts.managed]
    if missing:
        return _false("InterfaceMissing", f"no vxlan interface {', '.join(missing)}: a link of another kind holds "
                      "the name, and the controller leaves it alone; remove that link, or give the network another "
                      "interface name (name=)" + (f" ({counts})" if counts else ""))
    if facts.differs:
        what = "; ".join(f"{network}: {', '.join(diffs)}" for network, diffs in sorted(facts.differs.items()))
        doing = "converging it now" if facts.agent_running else "it is converged once the sidecar agent runs"
        return _false("InterfaceDiffers", f"{what} ({doing})")
    if not facts.agent_running:
        return _false(SETTING_UP, "interfaces set up, waiting for the sidecar agent")
    unsynced = [spec.network for spec in facts.networks if spec.network not in facts.peers]
    if unsynced:
        return _false(SETTING_UP, f"waiting for the members of {', '.join(unsynced)}")
    if facts.fdb is not None and all(facts.fdb.get(spec.name, frozenset()) == facts.peers[spec.network]
                                     for spec in facts.networks):
        return Condition(True, "Wired", counts)
    return _false("PeersMissing", counts)


def _false(reason: str, message: str) -> Condition:
    return Condition(False, reason, message[:MAX_MESSAGE])


def _have(facts: Facts, spec: NetworkSpec) -> int | None:
    """How many of the network's synced peers the interface's fdb holds; None when unknown."""
    if facts.fdb is None:
        return None
    return len(facts.fdb.get(spec.name, frozenset()) & facts.peers.get(spec.network, frozenset()))


def _counts(facts: Facts) -> str:
    """`vxeth1 3/3 peers, vxeth2 1/1 (+1 stale)` over the networks synced at least once ("" for none)."""
    parts = []
    for spec in facts.networks:
        if spec.network not in facts.peers:
            continue
        have = _have(facts, spec)
        stale = len(facts.fdb.get(spec.name, frozenset()) - facts.peers[spec.network]) if facts.fdb else 0
        parts.append((f"{spec.network} {'?' if have is None else have}/{len(facts.peers[spec.network])}",
                      f" (+{stale} stale)" if stale else ""))
    if not parts:
        return ""
    (first, stale), rest = parts[0], parts[1:]
    return ", ".join([f"{first} peers{stale}", *(count + stale for count, stale in rest)])
