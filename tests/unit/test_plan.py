"""`kube-vxlan-controller plan` offline: manifests in, networks, errors and the exact execs out, built by the
controller's own functions; exit codes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from kube_vxlan_controller import agent, plan
from kube_vxlan_controller.agentsession import session_argv
from kube_vxlan_controller.cli import main
from kube_vxlan_controller.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE, NETWORKS = str(ROOT / "deploy" / "example.yaml"), str(ROOT / "deploy" / "networks.yaml")
SETTINGS = Settings(namespace="kube-system", exec_deadline=3.0)


def example_gw() -> dict:
    return plan.pick_pod(EXAMPLE, "gw")[1]


def test_a_workloads_pod_template_is_picked_by_name_and_said_which():
    source, pod = plan.pick_pod(EXAMPLE, "gw")
    assert source == f"the pod template of Deployment default/gw ({EXAMPLE})"
    assert pod["metadata"]["labels"]["run"] == "gw" and pod["metadata"]["namespace"] == "default"
    with pytest.raises(plan.InputError, match="several pods .'a', 'b', 'gw'."):
        plan.pick_pod(EXAMPLE, None)


def test_pods_cronjobs_and_lists_are_found():
    template = {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": []}}
    docs = [{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}]},
            {"kind": "CronJob", "metadata": {"name": "c", "namespace": "ns"},
             "spec": {"jobTemplate": {"spec": {"template": template}}}},
            {"kind": "ConfigMap", "metadata": {"name": "m"}}]
    found = [what for what, _ in plan.pods_in([d for doc in docs for d in (doc["items"] if doc["kind"] == "List"
                                                                           else [doc])])]
    assert found == ["Pod default/p", "the pod template of CronJob ns/c"]


def test_offline_plan_uses_the_controllers_own_commands_and_marks_the_peers():
    configmap = plan.configmap_data(NETWORKS, "kube-vxlan-controller")
    p = plan.make_plan("test", example_gw(), configmap, SETTINGS, None)
    assert [spec.network for spec in p.networks] == ["vxeth1", "vxeth2"] and p.errors == ()
    init, sidecar = p.execs
    argv, batch = agent.setup_exec(p.networks, None, timeout=4, terminate_file="/run/terminate")
    assert (init.container, init.argv, init.stdin) == ("vxlan-controller-agent-init", argv, batch)
    lines = (f"fdb append 00:00:00:00:00:00 dev vxeth1 dst {plan.PEER_PLACEHOLDER}\n"
             f"fdb append 00:00:00:00:00:00 dev vxeth2 dst {plan.PEER_PLACEHOLDER}\n")
    first = f"append vxeth1 {plan.PEER_PLACEHOLDER}\nappend vxeth2 {plan.PEER_PLACEHOLDER}\n"
    assert (sidecar.argv, sidecar.stdin) == (session_argv(4, (1, first)), None), "a session carrying its first request"
    _, off = plan.make_plan("test", example_gw(), configmap, replace(SETTINGS, sessions="off"), None).execs
    assert (off.argv, off.stdin) == (["timeout", "4", "bridge", "-force", "-batch", "-"], lines)
    text = plan.render_text(p)
    assert "offline: the peers are unknown" in text and "  vxeth1: dev:eth0 id:101 ip:192.168.11.1/29" in text


def test_online_peers_make_the_fdb_batch_in_the_controllers_order():
    configmap = plan.configmap_data(NETWORKS, "kube-vxlan-controller")
    p = plan.make_plan("test", example_gw(), configmap, SETTINGS,
                       {"vxeth1": {"10.0.0.10", "10.0.0.9"}, "vxeth2": set()})
    assert p.execs[1].argv[3:] == ["kvc", "1", "append vxeth1 10.0.0.9 10.0.0.10\n"] and p.execs[1].stdin is None
    assert p.peers == {"vxeth1": ("10.0.0.9", "10.0.0.10"), "vxeth2": ()}
    assert "peers of vxeth2: none yet" in plan.render_text(p)
    alone = plan.make_plan("test", example_gw(), configmap, SETTINGS, {})
    assert len(alone.execs) == 1 and "no fdb exec yet" in plan.render_text(alone)


def test_peers_are_the_network_actors_members(tmp_path):
    def pod(uid: str, ip: str, networks: str, running: bool = True, label: str = "true") -> dict:
        state = {"running": {}} if running else {"waiting": {}}
        return {"metadata": {"uid": uid, "namespace": "default", "name": uid, "labels": {"vxlan.openvnf.org": label},
                             "annotations": {"vxlan.openvnf.org/networks": networks}},
                "status": {"podIP": ip, "containerStatuses": [{"name": "vxlan-controller-agent", "state": state}]}}

    pods = [pod("me", "10.0.0.1", "vxeth1"), pod("a", "10.0.0.2", "vxeth1, vxeth2"),
            pod("b", "10.0.0.3", "vxeth1", running=False), pod("c", "10.0.0.4", "vxeth1", label="false"),
            pod("d", "10.0.0.5", "vxeth9")]
    peers = plan.peers_in(pods, {"vxeth1": "id=1", "vxeth2": "id=2"}, SETTINGS, but="me")
    assert peers == {"vxeth1": {"10.0.0.2"}, "vxeth2": {"10.0.0.2"}}


def test_exit_codes_and_json(tmp_path, capsys):
    assert main(["plan", "-f", EXAMPLE, "gw", "--configmap", NETWORKS, "-o", "json", "--exec-deadline", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pod"] == "default/gw" and out["peers"] is None and len(out["execs"]) == 2
    assert out["execs"][0]["argv"][:2] == ["sh", "-c"] and "timeout 4 ip -batch - || exit 75" in out["execs"][0]["argv"][2]

    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load(Path(EXAMPLE).read_text().split("---")[0])
    doc["spec"]["template"]["metadata"]["annotations"]["vxlan.openvnf.org/networks"] = "vxeth1 mtu=9, vxeth2"
    del doc["spec"]["template"]["metadata"]["labels"]["vxlan.openvnf.org"]
    bad.write_text(yaml.safe_dump(doc))
    assert main(["plan", "-f", str(bad), "--configmap", NETWORKS]) == 1
    text = capsys.readouterr().out
    assert "bad mtu '9'" in text and 'no label vxlan.openvnf.org: ' in text
    assert "  vxeth2: dev:eth0 id:102" in text, "the pod's other networks still resolve"

    assert main(["plan", "-f", EXAMPLE, "--configmap", NETWORKS]) == 2  # which of a, b, gw?
    assert main(["plan", "-f", str(tmp_path / "missing.yaml"), "--configmap", NETWORKS]) == 2
    assert main(["plan"]) == 2
    assert main(["plan", "gw", "--kubeconfig", str(tmp_path / "missing")]) == 3
    assert "several pods" in capsys.readouterr().err
