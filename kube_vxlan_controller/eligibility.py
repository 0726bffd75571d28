"""Why the controller will not wire a pod its selector matches, or not as the pod needs: the causes,
each saying what to do.

Pure code, and the one source of these words: `plan` prints them as errors; the running controller
records each as a Kubernetes Event on the pod (the watcher, once per cause per pod), and the first cause
that `blocks` wiring is the pod's `vxlan.openvnf.org/Wired` condition (False, the cause's reason and
message). So `plan` and the running controller say the same thing.

The causes, in the order they are told:

| reason (the Event's: Vxlan + reason) | cause                                         | blocks |
|--------------------------------------|-----------------------------------------------|--------|
| `LabelNotTrue`                       | the opt-in label is not "true"                | yes    |
| `InitAgentMissing`                   | no init container vxlan-controller-agent-init | no     |
| `InitAgentLacksNetAdmin`             | it has no NET_ADMIN                           | no     |
| `SidecarMissing`                     | no container vxlan-controller-agent           | yes    |
| `SidecarLacksNetAdmin`               | it has no NET_ADMIN                           | no     |
| `NetworksAnnotationMissing`          | no annotation vxlan.openvnf.org/networks      | yes    |
| `NoValidNetwork`                     | the annotation resolves to no valid network   | yes    |

A cause that blocks leaves the controller nothing to do (no network, no container to exec in) whatever
the kernel says, so the condition can say it. The others are predictions about the kernel: the sidecar
creates interfaces the init agent did not (they are then missing when the pod's containers start), and a
runtime may grant what the spec does not ask for. For those the condition stays what the kernel shows
(`Failing` with the kernel's "Operation not permitted", or `Wired`), and the Event says what to fix.

The names (label, annotation, containers) are the controller's settings. Messages carry no pod name:
an Event and a condition belong to their pod; `plan` puts the pod in front.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from .model import AgentSpec, Condition, Pod
from .options import Resolution

#: where a pod author finds a pod the controller wires
EXAMPLE = "deploy/example.yaml"


class Names(Protocol):
    """The settings the causes depend on (`settings.Settings` has them)."""

    label: str
    annotation: str
    init_agent: str
    agent: str


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason the controller will not wire a pod, or not as it needs, with what to do about it."""

    #: CamelCase, as the Wired condition's reasons are
    reason: str
    message: str
    #: the controller cannot wire the pod while it holds (the Wired condition says it); else a warning
    blocks: bool = True

    @property
    def event_reason(self) -> str:
        """The reason of the Event that tells it (prefixed like the controller's other Events)."""
        return f"Vxlan{self.reason}"

    @property
    def condition(self) -> Condition:
        return Condition(False, self.reason, self.message)


def blocking(causes: tuple[Cause, ...]) -> Cause | None:
    """The cause the Wired condition says: the first that blocks wiring."""
    return next((cause for cause in causes if cause.blocks), None)


def opted_in(pod: Pod, names: Names) -> bool:
    """The pod's opt-in label is "true": the controller routes it to its networks."""
    return pod.labels.get(names.label) == "true"


def causes(pod: Pod, resolution: Resolution, names: Names) -> tuple[Cause, ...]:
    """Every reason the controller will not wire `pod`, whose annotation resolved to `resolution`;
    () when there is none."""
    found = []
    if not opted_in(pod, names):
        value = pod.labels.get(names.label)
        label = f"no label {names.label}" if value is None else \
            f'label {names.label} is {json.dumps(value)}, not "true"'
        found.append(Cause("LabelNotTrue", (
            f"{label}: the controller does not wire the pod (it is a member of no network, and its init agent, if "
            f'any, is never released); set the label {names.label} to "true"')))
    if pod.init_agent_spec is AgentSpec.MISSING:
        found.append(Cause("InitAgentMissing", (
            f"no init container {names.init_agent}: the pod's containers start before its VXLAN interfaces exist "
            f"(the sidecar creates them once it runs); add an init container {names.init_agent} with NET_ADMIN "
            f"(see {EXAMPLE})"), blocks=False))
    elif pod.init_agent_spec is AgentSpec.LACKS_NET_ADMIN:
        found.append(_lacks("InitAgentLacksNetAdmin", f"init container {names.init_agent}",
                            "the VXLAN interfaces cannot be set up in it, so the pod's containers start without them"))
    if pod.agent_spec is AgentSpec.MISSING:
        found.append(Cause("SidecarMissing", (
            f"no container {names.agent}: the controller has nowhere to keep the pod's interfaces and forwarding "
            f"table, so the pod reaches no peer; add a container {names.agent} with NET_ADMIN (see {EXAMPLE})")))
    elif pod.agent_spec is AgentSpec.LACKS_NET_ADMIN:
        found.append(_lacks("SidecarLacksNetAdmin", f"container {names.agent}",
                            "the pod's interfaces and forwarding table cannot be kept, so it reaches no peer"))
    annotation = pod.annotations.get(names.annotation)
    if annotation is None:
        found.append(Cause("NetworksAnnotationMissing", (
            f"no annotation {names.annotation}: the pod names no network and gets no VXLAN interface; annotate it "
            f"with {names.annotation} naming its networks (see {EXAMPLE})")))
    elif not resolution.networks:
        what = "no valid network (each network's error says why)" if resolution.errors else "no network"
        found.append(Cause("NoValidNetwork", (
            f"annotation {names.annotation} names {what}: the pod gets no VXLAN interface; fix the annotation or "
            "the network ConfigMap")))
    return tuple(found)


def _lacks(reason: str, container: str, consequence: str) -> Cause:
    return Cause(reason, f"{container} lacks the NET_ADMIN capability: where the runtime enforces capabilities, "
                         f"{consequence}; add NET_ADMIN to its securityContext.capabilities.add (see {EXAMPLE})",
                 blocks=False)
