"""Why the controller will not wire a pod: each cause with its reason and what to do, and `plan` saying the
same words as the running controller."""

from __future__ import annotations

import dataclasses

import pytest

from kube_vxlan_controller import eligibility, plan
from kube_vxlan_controller.model import AgentSpec, Condition, Pod
from kube_vxlan_controller.options import resolve
from kube_vxlan_controller.settings import Settings

SETTINGS = Settings(namespace="kube-system")
CONFIGMAP = {"vxeth1": "id=101"}
FIT = Pod(uid="u", namespace="default", name="p", labels={"vxlan.openvnf.org": "true"},
          annotations={"vxlan.openvnf.org/networks": "vxeth1"})


def causes(pod: Pod) -> tuple[eligibility.Cause, ...]:
    resolution = resolve(pod.annotations.get(SETTINGS.annotation), CONFIGMAP, pod_key=pod.key)
    return eligibility.causes(pod, resolution, SETTINGS)


def reasons(pod: Pod) -> list[str]:
    return [cause.reason for cause in causes(pod)]


def test_a_pod_as_the_example_declares_it_has_no_cause():
    assert causes(FIT) == ()
    assert eligibility.opted_in(FIT, SETTINGS)


@pytest.mark.parametrize("change, reason, blocks, says", [
    ({"labels": {"vxlan.openvnf.org": "yes"}}, "LabelNotTrue", True,
     'label vxlan.openvnf.org is "yes", not "true": the controller does not wire the pod (it is a member of no '
     'network, and its init agent, if any, is never released); set the label vxlan.openvnf.org to "true"'),
    ({"labels": {}}, "LabelNotTrue", True, "no label vxlan.openvnf.org: "),
    ({"init_agent_spec": AgentSpec.MISSING}, "InitAgentMissing", False,
     "no init container vxlan-controller-agent-init: the pod's containers start before its VXLAN interfaces exist "
     "(the sidecar creates them once it runs); add an init container vxlan-controller-agent-init with NET_ADMIN "
     "(see deploy/example.yaml)"),
    ({"init_agent_spec": AgentSpec.LACKS_NET_ADMIN}, "InitAgentLacksNetAdmin", False,
     "init container vxlan-controller-agent-init lacks the NET_ADMIN capability: where the runtime enforces "
     "capabilities, the VXLAN interfaces cannot be set up in it, so the pod's containers start without them; add "
     "NET_ADMIN to its securityContext.capabilities.add (see deploy/example.yaml)"),
    ({"agent_spec": AgentSpec.MISSING}, "SidecarMissing", True,
     "no container vxlan-controller-agent: the controller has nowhere to keep the pod's interfaces and forwarding "
     "table, so the pod reaches no peer; add a container vxlan-controller-agent with NET_ADMIN (see "
     "deploy/example.yaml)"),
    ({"agent_spec": AgentSpec.LACKS_NET_ADMIN}, "SidecarLacksNetAdmin", False,
     "container vxlan-controller-agent lacks the NET_ADMIN capability: where the runtime enforces capabilities, "
     "the pod's interfaces and forwarding table cannot be kept"),
    ({"annotations": {}}, "NetworksAnnotationMissing", True,
     "no annotation vxlan.openvnf.org/networks: the pod names no network and gets no VXLAN interface; annotate it "
     "with vxlan.openvnf.org/networks naming its networks (see deploy/example.yaml)"),
    ({"annotations": {"vxlan.openvnf.org/networks": "vxeth9, vxeth1 mtu=9"}}, "NoValidNetwork", True,
     "annotation vxlan.openvnf.org/networks names no valid network (each network's error says why): the pod gets "
     "no VXLAN interface; fix the annotation or the network ConfigMap"),
    ({"annotations": {"vxlan.openvnf.org/networks": ""}}, "NoValidNetwork", True,
     "annotation vxlan.openvnf.org/networks names no network: "),
])
def test_each_cause_says_why_and_what_to_do(change, reason, blocks, says):
    (cause,) = causes(dataclasses.replace(FIT, **change))
    assert cause.reason == reason and cause.message.startswith(says)
    assert cause.blocks == blocks and eligibility.blocking((cause,)) == (cause if blocks else None)
    assert cause.event_reason == f"Vxlan{reason}"
    assert cause.condition == Condition(False, reason, cause.message)


def test_a_pod_with_one_valid_network_among_bad_ones_is_wired_and_has_no_cause():
    assert causes(dataclasses.replace(FIT, annotations={"vxlan.openvnf.org/networks": "vxeth9, vxeth1"})) == ()


def test_every_cause_is_told_in_order_the_label_first():
    pod = dataclasses.replace(FIT, labels={"vxlan.openvnf.org": "false"}, annotations={},
                              init_agent_spec=AgentSpec.LACKS_NET_ADMIN, agent_spec=AgentSpec.MISSING)
    assert reasons(pod) == ["LabelNotTrue", "InitAgentLacksNetAdmin", "SidecarMissing", "NetworksAnnotationMissing"]
    assert eligibility.blocking(causes(pod)).reason == "LabelNotTrue"


def test_the_condition_says_the_first_cause_that_blocks_wiring():
    pod = dataclasses.replace(FIT, annotations={}, init_agent_spec=AgentSpec.MISSING,
                              agent_spec=AgentSpec.LACKS_NET_ADMIN)
    assert reasons(pod) == ["InitAgentMissing", "SidecarLacksNetAdmin", "NetworksAnnotationMissing"]
    assert eligibility.blocking(causes(pod)).reason == "NetworksAnnotationMissing"


def test_the_names_are_the_controllers_settings():
    s = Settings(namespace="x", label="example.com/vx", annotation="example.com/nets", init_agent="init",
                 agent="side")
    pod = Pod(uid="u", namespace="d", name="p", labels={"example.com/vx": "1"},
              init_agent_spec=AgentSpec.MISSING, agent_spec=AgentSpec.MISSING)
    messages = [cause.message for cause in eligibility.causes(pod, resolve(None, {}, pod_key="d/p"), s)]
    assert messages[0].startswith('label example.com/vx is "1", not "true"')
    assert messages[1].startswith("no init container init: ") and messages[2].startswith("no container side: ")
    assert messages[3].startswith("no annotation example.com/nets: ")


def test_plan_says_what_the_controller_says():
    raw = {"metadata": {"uid": "u", "namespace": "default", "name": "p", "labels": {"vxlan.openvnf.org": "yes"},
                        "annotations": {"vxlan.openvnf.org/networks": "vxeth1"}},
           "spec": {"containers": [{"name": "vxlan-controller-agent"}]}}
    p = plan.make_plan("test", raw, CONFIGMAP, SETTINGS, None)
    pod = plan.pods.pod_from_json(raw)
    assert p.errors == tuple(f"pod default/p: {cause.message}" for cause in causes(pod))
    assert [cause.reason for cause in causes(pod)] == ["LabelNotTrue", "InitAgentMissing", "SidecarLacksNetAdmin"]
