"""Domain values shared by every layer.

Everything here is immutable: values cross actor boundaries and pykka does not copy messages, so a
mutable value shared between two actors would be a race. `k8s/` turns API objects into these values;
no client model leaves `k8s/`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Mapping

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Condition:
    """A pod status condition as the controller writes and reads it (its type is the caller's)."""

    status: bool
    #: CamelCase, as Kubernetes reasons are
    reason: str
    message: str = ""


class AgentSpec(enum.Enum):
    """How a pod's spec declares one of the agent containers."""

    #: declared, with the NET_ADMIN capability (or privileged)
    FIT = "fit"
    LACKS_NET_ADMIN = "lacks NET_ADMIN"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Pod:
    """What the controller needs to know about one pod, as last seen by the API."""

    uid: str
    namespace: str
    name: str
    #: `status.podIP`, the primary address
    ip: str | None = None
    #: `status.podIPs`: every address, the primary first (dual-stack: one per family)
    ips: tuple[str, ...] = ()
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    #: the init agent container (vxlan-controller-agent-init) is running: setup can happen now.
    init_agent_running: bool = False
    #: the sidecar agent container (vxlan-controller-agent) is running: the fdb can be reconciled.
    agent_running: bool = False
    #: restart count of the sidecar agent, as the API reports it. Reconciling needs nothing from it:
    #: the fdb lives in the pod's network namespace, which a sidecar restart leaves alone.
    agent_restarts: int = 0
    #: which instance of the init agent runs (its containerID): a pod whose sandbox was re-created
    #: (same UID, node reboot) runs its init containers again, and must be set up again.
    init_agent_id: str = ""
    #: deletionTimestamp is set: the pod is going away and leaves every network now.
    deleting: bool = False
    phase: str = ""
    #: the pod's `vxlan.openvnf.org/Wired` condition as the API holds it (None: it has none)
    wired: Condition | None = None
    #: how the spec declares the init agent and the sidecar agent (`pod_from_json` reads the spec; a Pod
    #: built by hand declares both fit)
    init_agent_spec: AgentSpec = AgentSpec.FIT
    agent_spec: AgentSpec = AgentSpec.FIT
    #: `spec.readinessGates` names the Wired condition: the pod is Ready only once it is True
    gated: bool = False

    @property
    def joinable(self) -> bool:
        """The sidecar runs, the IP is known and the pod is not being deleted: it is a member of every
        network it names validly (the network actors' rule; `plan` counts peers by it too)."""
        return self.agent_running and bool(self.ip) and not self.deleting

    @property
    def addresses(self) -> tuple[str, ...]:
        """The pod's addresses, primary first: `podIPs`, or `podIP` alone when the API gave no list."""
        return self.ips or ((self.ip,) if self.ip else ())

    @property
    def key(self) -> str:
        """`namespace/name`, the way every log line names a pod."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of one command run in a pod's container."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The leader election record a coordination.k8s.io/v1 Lease holds (client-go's
    LeaderElectionRecord). Times are the writers' wall clocks: recorded for people, never compared
    (the election judges expiry by when it saw the record change, on its own clock)."""

    #: who leads; "" when nobody does (after a release)
    holder: str = ""
    #: seconds the holder's term lasts after the record last changed
    lease_duration: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    #: how often the holder changed
    transitions: int = 0
