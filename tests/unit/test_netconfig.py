"""The network ConfigMap with last known good entries (`netconfig.NetworkConfig`)."""

from __future__ import annotations

from kube_vxlan_controller.netconfig import NetworkConfig
from kube_vxlan_controller.options import resolve

GOOD = {"vxeth1": "id=101 up", "vxeth2": "id=102 up"}


def test_a_deleted_configmap_keeps_every_network_it_had_for_the_pods_that_had_them():
    config = NetworkConfig("kube-system/kube-vxlan-controller")
    assert config.update(GOOD) == {}
    assert config.update({}) == {"vxeth1": "kube-system/kube-vxlan-controller has no entry for it (deleted?)",
                                 "vxeth2": "kube-system/kube-vxlan-controller has no entry for it (deleted?)"}
    assert dict(config.for_pod({"vxeth1"})) == {"vxeth1": "id=101 up"}
    assert dict(config.for_pod(set())) == {}  # a pod that had neither gets no defaults that are gone
    assert resolve("vxeth1", config.for_pod({"vxeth1"}), pod_key="d/a").networks[0].vni == 101
    assert config.update(GOOD) == {"vxeth1": None, "vxeth2": None}
    assert config.kept == {}


def test_an_invalid_entry_is_kept_at_its_last_good_value_and_a_valid_new_one_ends_that():
    config = NetworkConfig("cm")
    config.update(GOOD)
    assert config.update({**GOOD, "vxeth1": "id=abc"}) == {
        "vxeth1": "its entry in cm is invalid (bad id 'abc': expected an integer 0–16777215)"}
    assert config.for_pod({"vxeth1", "vxeth2"})["vxeth1"] == "id=101 up"
    assert config.describe("vxeth1").endswith("running members keep its last good options 'id=101 up'")
    assert config.update({**GOOD, "vxeth1": "id=111 up"}) == {"vxeth1": None}
    assert config.for_pod({"vxeth1"})["vxeth1"] == "id=111 up"


def test_a_network_never_valid_is_never_kept():
    config = NetworkConfig("cm")
    config.update({"vxeth1": "id=abc"})
    assert config.update({}) == {} and config.kept == {}
