"""Why the controller will not wire a pod its selector matches: the causes, each saying what to do.

Pure code, and the one source of these words: `plan` prints them as errors; the running controller
records each as a Kubernetes Event on the pod (the watcher, once per cause per pod) and puts the first in
the pod's `vxlan.openvnf.org/Wired` condition (False, the cause's reason and message). So `plan` and the
running controller say the same thing.

The causes, in the order they are told (the condition carries the first):

| reason (condition)        | Event reason                  | cause                                          |
|---------------------------|-------------------------------|------------------------------------------------|
| `LabelNotTrue`            | `VxlanLabelNotTrue`           | the opt-in label is not "true" ("yes", "false")|
| `InitAgentMissing`        | `VxlanInitAgentMissing`       | no init container vxlan-controller-agent-init  |
| `InitAgentLacksNetAdmin`  | `VxlanInitAgentLacksNetAdmin` | it has no NET_ADMIN                            |
| `SidecarMissing`          | `VxlanSidecarMissing`         | no container vxlan-controller-agent            |
| `SidecarLacksNetAdmin`    | `VxlanSidecarLacksNetAdmin`   | it has no NET_ADMIN                            |
| `NetworksAnnotationMissing` | `VxlanNetworksAnnotationMissing` | no annotation vxlan.openvnf.org/networks  |
| `NoValidNetwork`          | `VxlanNoValidNetwork`         | the annotation resolves to no valid network    |

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
    """One reason the controller will not wire a pod, with what to do about it."""

    #: CamelCase, the Wired condition's reason
    reason: str
    message: str

    @property
    def event_reason(self) -> str:
        """The reason of the Event that tells it (prefixed like the controller's other Events)."""
        return f"Vxlan{self.reason}"

    @property
    def condition(self) -> Condition:
        return Condition(False, self.reason, self.message)


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
    found += _agent(pod.init_agent_spec, "InitAgent", "init container", names.init_agent,
                    "the pod's VXLAN interfaces are never set up")
    found += _agent(pod.agent_spec, "Sidecar", "container", names.agent,
                    "the pod's forwarding table is never kept, so it reaches no peer")
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


def _agent(spec: AgentSpec, reason: str, kind: str, name: str, consequence: str) -> list[Cause]:
    if spec is AgentSpec.MISSING:
        article = "an" if kind[0] in "aeiou" else "a"
        return [Cause(f"{reason}Missing", f"no {kind} {name}: {consequence}; add {article} {kind} {name} with "
                                          f"NET_ADMIN (see {EXAMPLE})")]
    if spec is AgentSpec.LACKS_NET_ADMIN:
        return [Cause(f"{reason}LacksNetAdmin", f"{kind} {name} lacks the NET_ADMIN capability: {consequence}; add "
                                                f"NET_ADMIN to its securityContext.capabilities.add (see {EXAMPLE})")]
    return []
