"""A network's snapshot: who is whose peer."""

from kube_vxlan_controller.messages import Member, Snapshot


def test_members_on_another_vni_or_port_are_never_peers():
    snapshot = Snapshot("vxeth1", (Member("a", "d/a", "10.0.0.1", "vxeth1", 101, 8472),
                                   Member("b", "d/b", "10.0.0.2", "vxeth1", 101, 8472),
                                   Member("c", "d/c", "10.0.0.3", "vxeth1", 201, 8472),
                                   Member("d", "d/d", "10.0.0.4", "vxeth1", 101, 4789)))
    assert snapshot.peers_of("a") == {"10.0.0.2"}
    assert snapshot.peers_of("c") == frozenset()
    assert snapshot.peers_of("gone") == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
