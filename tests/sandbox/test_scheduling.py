"""Where the sandbox puts a new pod, and how long a pod stays on an unreachable node (nodes.py): pure
functions over a store, no namespaces."""

from __future__ import annotations

from kvc_sandbox.cluster import Node
from kvc_sandbox.nodes import UNREACHABLE, default_tolerations, node_object, schedule, toleration_seconds
from kvc_sandbox.resources import NODES, PODS
from kvc_sandbox.store import Store


def store_with(*names: str) -> Store:
    store = Store()
    for name in names:
        store.create(NODES, node_object(Node(name, ("10.66.0.0/24",), ("10.65.0.1",)), "netns"))
    return store


def add_pod(store: Store, name: str, node: str, phase: str = "Running") -> None:
    store.create(PODS, {"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node},
                        "status": {"phase": phase}})


def test_the_emptiest_node_gets_the_pod_ended_pods_do_not_count_and_ties_go_by_name():
    store = store_with("n2", "n1", "n3")
    assert schedule(store, {}) == "n1"
    add_pod(store, "a", "n1")
    add_pod(store, "b", "n2", phase="Succeeded")
    assert schedule(store, {}) == "n2"


def test_node_name_and_hostname_selector_win_and_a_tainted_or_missing_node_fits_nobody():
    store = store_with("n1", "n2")
    add_pod(store, "a", "n2")
    assert schedule(store, {"nodeName": "n2"}) == "n2"
    assert schedule(store, {"nodeSelector": {"kubernetes.io/hostname": "n2"}}) == "n2"
    assert schedule(store, {"nodeSelector": {"kubernetes.io/hostname": "n9"}}) is None
    store.update(NODES, "", "n1", lambda n: n["spec"].update(taints=[{"key": UNREACHABLE, "effect": "NoSchedule"}]))
    assert schedule(store, {}) == "n2"
    assert schedule(store, {"nodeSelector": {"kubernetes.io/hostname": "n1"}}) is None


def test_pods_tolerate_an_unreachable_node_300_s_unless_they_say_otherwise():
    spec: dict = {}
    default_tolerations(spec)
    assert toleration_seconds(spec, UNREACHABLE) == 300
    own = {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}]}
    default_tolerations(own)
    assert toleration_seconds(own, UNREACHABLE) == 3 and len(own["tolerations"]) == 2  # not-ready's added
    assert toleration_seconds({"tolerations": [{"operator": "Exists"}]}, UNREACHABLE) is None  # for ever
    assert toleration_seconds({}, UNREACHABLE) == 0  # no toleration: evicted at once
