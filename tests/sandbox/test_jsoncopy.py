"""The sandbox's copies of API objects (kvc_sandbox.jsoncopy): deep, equal, and right for what is not JSON."""

from __future__ import annotations

from kvc_sandbox.jsoncopy import copy_json


def test_a_copy_is_equal_and_shares_nothing_mutable():
    pod = {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "args": ["x"]}]},
           "status": {"podIP": None, "ready": True, "restartCount": 0, "ratio": 0.5}}
    copied = copy_json(pod)
    assert copied == pod
    copied["metadata"]["labels"]["a"] = "changed"
    copied["spec"]["containers"][0]["args"].append("y")
    assert pod["metadata"]["labels"] == {"a": "b"} and pod["spec"]["containers"][0]["args"] == ["x"]


def test_what_is_not_json_is_deep_copied_all_the_same():
    value = {"tuple": ([1], 2), "set": {3}}
    copied = copy_json(value)
    assert copied == value and copied["tuple"][0] is not value["tuple"][0] and copied["set"] is not value["set"]
