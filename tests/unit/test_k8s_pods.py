"""Pod JSON as the API writes it → model.Pod, in one step (no client model)."""

from __future__ import annotations

import dataclasses

import pytest
from kube_vxlan_controller.k8s.pods import PodChanged, PodDeleted, PodsListed, pod_from_json
from kube_vxlan_controller.model import AgentSpec, Pod


def v1pod(**status) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "a-0",
            "namespace": "default",
            "uid": "1b6c2a4e-0000-4000-8000-000000000001",
            "resourceVersion": "181701",
            "labels": {"vxlan.openvnf.org": "true", "app": "a"},
            "annotations": {"vxlan.openvnf.org/networks": "vxeth1\n  ip=192.168.11.2/29\n"},
        },
        "spec": {
            "initContainers": [{"name": "vxlan-controller-agent-init", "image": "agent"}],
            "containers": [{"name": "app", "image": "app"}, {"name": "vxlan-controller-agent", "image": "agent"}],
        },
        "status": status,
    }
    return body


def container(name: str, state: str, restarts: int = 0) -> dict:
    states = {
        "running": {"running": {"startedAt": "2024-05-01T10:00:00Z"}},
        "waiting": {"waiting": {"reason": "PodInitializing"}},
        "terminated": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    return {"name": name, "image": "agent", "imageID": "", "ready": state == "running",
            "restartCount": restarts, "state": states[state]}


def test_pending_pod_without_status_has_no_ip_and_no_agents():
    pod = pod_from_json(v1pod())
    assert pod == Pod(
        uid="1b6c2a4e-0000-4000-8000-000000000001",
        namespace="default",
        name="a-0",
        resource_version="181701",
        labels={"vxlan.openvnf.org": "true", "app": "a"},
        annotations={"vxlan.openvnf.org/networks": "vxeth1\n  ip=192.168.11.2/29\n"},
        init_agent_spec=AgentSpec.LACKS_NET_ADMIN,
        agent_spec=AgentSpec.LACKS_NET_ADMIN,
    )
    assert pod.key == "default/a-0"


@pytest.mark.parametrize("context, expected", [
    ({"capabilities": {"add": ["NET_ADMIN"]}}, AgentSpec.FIT),
    ({"capabilities": {"add": ["CAP_NET_ADMIN", "SYS_TIME"]}}, AgentSpec.FIT),
    ({"privileged": True}, AgentSpec.FIT),
    ({"capabilities": {"add": ["all"]}}, AgentSpec.FIT),
    ({"capabilities": {"add": ["SYS_TIME"], "drop": ["NET_ADMIN"]}}, AgentSpec.LACKS_NET_ADMIN),
    ("not a dict", AgentSpec.LACKS_NET_ADMIN),
])
def test_the_spec_says_whether_each_agent_container_is_there_with_net_admin(context, expected):
    body = v1pod()
    body["spec"]["initContainers"][0]["securityContext"] = context
    pod = pod_from_json(body)
    assert (pod.init_agent_spec, pod.agent_spec) == (expected, AgentSpec.LACKS_NET_ADMIN)
    del body["spec"]["containers"][1]
    body["spec"]["initContainers"] = "oddly typed"
    pod = pod_from_json(body)
    assert (pod.init_agent_spec, pod.agent_spec) == (AgentSpec.MISSING, AgentSpec.MISSING)


def test_a_readiness_gate_on_the_wired_condition_is_seen():
    body = v1pod()
    assert not pod_from_json(body).gated
    body["spec"]["readinessGates"] = [{"conditionType": "example.com/Other"}]
    assert not pod_from_json(body).gated
    body["spec"]["readinessGates"].append({"conditionType": "vxlan.openvnf.org/Wired"})
    assert pod_from_json(body).gated


def test_init_agent_running_while_main_containers_wait():
    pod = pod_from_json(v1pod(
        phase="Pending",
        podIP="10.66.0.7",
        initContainerStatuses=[container("vxlan-controller-agent-init", "running")],
        containerStatuses=[container("app", "waiting"), container("vxlan-controller-agent", "waiting")],
    ))
    assert (pod.ip, pod.phase) == ("10.66.0.7", "Pending")
    assert pod.init_agent_running and not pod.agent_running


def test_sidecar_agent_running_after_init_agent_terminated_with_its_restart_count():
    pod = pod_from_json(v1pod(
        phase="Running",
        podIP="10.66.0.7",
        initContainerStatuses=[container("vxlan-controller-agent-init", "terminated")],
        containerStatuses=[container("app", "running"), container("vxlan-controller-agent", "running", restarts=3)],
    ))
    assert not pod.init_agent_running
    assert pod.agent_running
    assert pod.agent_restarts == 3


def test_other_containers_running_do_not_count_as_agents():
    pod = pod_from_json(v1pod(
        initContainerStatuses=[container("other-init", "running")],
        containerStatuses=[container("app", "running")],
    ))
    assert not pod.init_agent_running and not pod.agent_running and pod.agent_restarts == 0


def test_agent_container_names_are_parameters():
    pod = pod_from_json(
        v1pod(
            initContainerStatuses=[container("my-init", "running")],
            containerStatuses=[container("my-agent", "running", restarts=1)],
        ),
        init_container="my-init",
        agent_container="my-agent",
    )
    assert pod.init_agent_running and pod.agent_running and pod.agent_restarts == 1


def test_deletion_timestamp_means_deleting():
    v1 = v1pod(phase="Running")
    assert not pod_from_json(v1).deleting
    v1["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    assert pod_from_json(v1).deleting


def test_pod_values_do_not_share_the_parsed_json():
    v1 = v1pod()
    pod = pod_from_json(v1)
    v1["metadata"]["labels"]["app"] = "changed"
    assert pod.labels["app"] == "a"
    with pytest.raises(TypeError):
        pod.labels["app"] = "x"  # type: ignore[index]


def test_a_pod_without_metadata_or_status_or_with_odd_types_converts():
    pod = pod_from_json({})
    assert (pod.uid, pod.name, pod.ip, pod.agent_running) == ("", "", None, False)
    odd = pod_from_json({"metadata": {"name": 7, "labels": {"a": 1, "b": "x"}}, "status": {
        "containerStatuses": [None, {"name": "vxlan-controller-agent", "state": {"running": None},
                                     "restartCount": "3"}]}})
    assert (odd.name, dict(odd.labels), odd.agent_running, odd.agent_restarts) == ("", {"b": "x"}, False, 0)


def test_events_are_frozen_values():
    pod = pod_from_json(v1pod())
    listed = PodsListed((pod,), "5")
    assert listed == PodsListed((pod,), "5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        listed.resource_version = "6"  # type: ignore[misc]
    for event in (PodChanged(pod), PodDeleted(pod)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.pod = pod  # type: ignore[misc]


def test_dual_stack_pod_has_its_primary_ip_and_every_address():
    pod = pod_from_json(v1pod(podIP="10.66.0.2", podIPs=[{"ip": "10.66.0.2"}, {"ip": "fd00:66::2"}]))
    assert (pod.ip, pod.ips, pod.addresses) == ("10.66.0.2", ("10.66.0.2", "fd00:66::2"), ("10.66.0.2", "fd00:66::2"))
    assert pod_from_json(v1pod(podIP="10.66.0.2")).addresses == ("10.66.0.2",)  # an API without podIPs
