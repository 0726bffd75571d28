"""The Wired condition from what a pod actor knows (`wired.judge`): reasons in order, counts in the message,
and the strategic merge patch that writes it."""

from __future__ import annotations

import datetime

from kube_vxlan_controller.k8s.podstatus import condition_patch
from kube_vxlan_controller.model import Condition, Pod
from kube_vxlan_controller.options import resolve
from kube_vxlan_controller.wired import CONDITION_TYPE, Facts, judge

GW = resolve("vxeth1\nvxeth2", {"vxeth1": "id=101", "vxeth2": "id=102"}, pod_key="default/gw").networks
PEERS = {"vxeth1": frozenset({"10.0.0.2", "10.0.0.3", "10.0.0.4"}), "vxeth2": frozenset({"10.0.0.5"})}
EXACT = {"vxeth1": PEERS["vxeth1"], "vxeth2": PEERS["vxeth2"]}


def wired(**changes) -> Facts:
    facts = dict(networks=GW, managed=frozenset({"vxeth1", "vxeth2"}), agent_running=True, fdb=EXACT, peers=PEERS)
    facts.update(changes)
    return Facts(**facts)


def test_true_when_every_interface_holds_every_peer_with_counts_per_network():
    assert judge(wired()) == Condition(True, "Wired", "vxeth1 3/3 peers, vxeth2 1/1")


def test_a_network_alone_is_wired_with_no_peers():
    facts = wired(peers={"vxeth1": frozenset(), "vxeth2": frozenset()}, fdb={})
    assert judge(facts) == Condition(True, "Wired", "vxeth1 0/0 peers, vxeth2 0/0")


def test_peers_missing_counts_what_the_fdb_holds_of_them():
    facts = wired(fdb={"vxeth1": frozenset({"10.0.0.2", "10.0.0.9"}), "vxeth2": PEERS["vxeth2"]})
    assert judge(facts) == Condition(False, "PeersMissing", "vxeth1 1/3 peers (+1 stale), vxeth2 1/1")


def test_a_failed_pass_says_so_first_with_unknown_counts():
    facts = wired(fdb=None, failure=("Hung", "exec timed out after 3s"), invalid=("bad",))
    assert judge(facts) == Condition(False, "Hung", "vxeth1 ?/3 peers, vxeth2 ?/1: exec timed out after 3s")


def test_a_failed_setup_has_no_counts():
    facts = wired(managed=None, peers={}, fdb=None, agent_running=False, failure=("Failing", "ip exited 2"))
    assert judge(facts) == Condition(False, "Failing", "ip exited 2")


def test_an_invalid_network_holds_the_pod_unwired():
    errors = ("pod default/gw: network 'vxeth9': no id (VNI): set id= in the annotation or the network ConfigMap",)
    assert judge(wired(invalid=errors)) == Condition(False, "NetworksInvalid", errors[0])


def test_a_setup_that_gave_up_is_not_wired_even_when_the_fdb_is_exact():
    condition = judge(wired(setup_failed="ip exited 2: Nexthop has invalid gateway"))
    assert (condition.status, condition.reason) == (False, "SetupFailed")
    assert "Nexthop has invalid gateway" in condition.message


def test_setting_up_until_interfaces_sidecar_and_members_are_there():
    assert judge(wired(managed=None, fdb=None, peers={})).reason == "SettingUp"
    assert judge(wired(agent_running=False, peers={})) == \
        Condition(False, "SettingUp", "interfaces set up, waiting for the sidecar agent")
    assert judge(wired(peers={"vxeth1": PEERS["vxeth1"]})) == \
        Condition(False, "SettingUp", "waiting for the members of vxeth2")


def test_an_interface_not_managed_is_missing():
    condition = judge(wired(managed=frozenset({"vxeth1"})))
    assert (condition.status, condition.reason) == (False, "InterfaceMissing")
    assert condition.message.startswith("no vxlan interface vxeth2: a link of another kind holds the name")
    assert condition.message.endswith("another interface name (name=) (vxeth1 3/3 peers, vxeth2 1/1)")
    assert judge(wired(managed=frozenset(), peers={})).message.endswith("another interface name (name=)"), "no counts"


def test_a_reason_not_to_wire_the_pod_at_all_comes_first():
    cause = ("SidecarMissing", "no container vxlan-controller-agent: …")
    assert judge(wired(cause=cause, failure=("Failing", "ip exited 2"), invalid=("bad",))) == Condition(False, *cause)


def test_a_pod_with_no_networks_is_wired():
    assert judge(Facts(networks=())) == Condition(True, "Wired", "no networks")


def test_long_messages_are_cut_to_what_the_api_takes():
    assert len(judge(wired(invalid=("x" * 5000,))).message) == 1024


def test_the_patch_merges_one_condition_by_type_and_names_the_uid():
    pod = Pod(uid="u-1", namespace="default", name="gw")
    now = datetime.datetime(2026, 12, 2, 5, 0, 0, tzinfo=datetime.timezone.utc)
    body = condition_patch(pod, Condition(True, "Wired", "vxeth1 1/1 peers"), transition=True, now=now)
    assert body == {"metadata": {"uid": "u-1"}, "status": {"conditions": [
        {"type": CONDITION_TYPE, "status": "True", "reason": "Wired", "message": "vxeth1 1/1 peers",
         "lastProbeTime": None, "lastTransitionTime": "2026-12-02T05:00:00Z"}]}}
    # only the message changed: the API keeps the time of the last flip
    unchanged = condition_patch(pod, Condition(True, "Wired", "vxeth1 2/2 peers"), transition=False)
    assert "lastTransitionTime" not in unchanged["status"]["conditions"][0]


def test_an_interface_that_differs_from_its_spec_is_not_wired_and_says_what_differs():
    facts = wired(differs={"vxeth1": ("id 101 → 201",)})
    assert judge(facts) == Condition(False, "InterfaceDiffers", "vxeth1: id 101 → 201 (converging it now)")
    waiting = wired(differs={"vxeth1": ("id 101 → 201",)}, agent_running=False)
    assert judge(waiting).message == "vxeth1: id 101 → 201 (it is converged once the sidecar agent runs)"


def test_an_fdb_holding_a_pod_that_is_no_peer_is_not_wired():
    facts = wired(fdb={**EXACT, "vxeth2": EXACT["vxeth2"] | {"10.0.0.9"}})
    assert judge(facts) == Condition(False, "PeersMissing", "vxeth1 3/3 peers, vxeth2 1/1 (+1 stale)")
