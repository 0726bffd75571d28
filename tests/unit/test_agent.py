"""Agent commands: argv shapes, parsing iproute2 JSON, setup and fdb batches — the batches also for real,
in a scratch network namespace (root)."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_vxlan_controller.agent import (
    FDB_ARGV,
    LINKS_ARGV,
    LINKS_EXIST,
    STATE_ARGV,
    TERMINATE_ARGV,
    AgentOutputError,
    FdbDiff,
    Link,
    actual_spec,
    batch_argv,
    converge_argv,
    differences,
    fdb_batch,
    fdb_diff,
    fdb_lines,
    parse_fdb,
    parse_links,
    parse_state,
    plan_links,
    setup_batch,
    setup_exec,
    setup_conflicts,
    stale_links,
    with_timeout,
)
from kube_vxlan_controller.options import NetworkSpec, resolve

CONFIGMAP = {"vxeth1": "id=101 up", "vxeth2": "id=102 up"}


def specs(annotation: str, configmap=CONFIGMAP) -> tuple[NetworkSpec, ...]:
    result = resolve(annotation, configmap, pod_key="default/a")
    assert result.errors == ()
    return result.networks


# ---- argv -----------------------------------------------------------------------------------------


def test_fixed_argvs():
    assert LINKS_ARGV == ["ip", "-d", "-j", "addr", "show"]
    assert FDB_ARGV == ["bridge", "-j", "fdb", "show"]
    assert TERMINATE_ARGV == ["kill", "-TERM", "1"]


def test_release_touches_the_terminate_file_then_sends_term_in_one_exec():
    from kube_vxlan_controller.agent import release_argv

    assert release_argv("/run/terminate") == ["sh", "-c", "touch /run/terminate 2>/dev/null; kill -TERM 1"]
    assert release_argv("") == ["kill", "-TERM", "1"]
    for bad in ("run/terminate", "/run/x; reboot", "/run/$(id)", "/run/a b", "/" + "a" * 300):
        with pytest.raises(ValueError):
            release_argv(bad)


def test_batch_argv_reads_stdin_under_a_timeout():
    assert batch_argv("ip", 10) == ["timeout", "10", "ip", "-force", "-batch", "-"]
    assert batch_argv("bridge", 3) == ["timeout", "3", "bridge", "-force", "-batch", "-"]
    assert with_timeout(FDB_ARGV, 5) == ["timeout", "5", *FDB_ARGV]


@pytest.mark.parametrize("tool,timeout", [("sh", 10), ("ip; reboot", 10), ("ip", 0), ("ip", -1), ("ip", 1.5),
                                          ("ip", "10"), ("ip", True)])
def test_batch_argv_rejects_anything_else(tool, timeout):
    with pytest.raises(ValueError):
        batch_argv(tool, timeout)


# ---- parse_links ----------------------------------------------------------------------------------

#: `ip -d -j addr show` from iproute2 6.1, trimmed
ADDR_SHOW = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
     "linkinfo": None, "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifindex": 2, "ifname": "eth0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500,
     "linkinfo": {"info_kind": "veth"},
     "addr_info": [{"family": "inet", "local": "10.0.0.1", "prefixlen": 24, "scope": "global"}]},
    {"ifindex": 6, "ifname": "vx2", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1450,
     "linkinfo": {"info_kind": "vxlan", "info_data": {
         "id": 7, "link": "eth0", "port_range": {"low": 0, "high": 0}, "port": 4789, "learning": True,
         "ttl": 5, "df": "unset", "ageing": 300}},
     "addr_info": [
         {"family": "inet", "local": "192.168.1.2", "prefixlen": 24, "scope": "global", "label": "vx2"},
         {"family": "inet6", "local": "fd00:0::1", "prefixlen": 64, "scope": "global", "tentative": True},
         {"family": "inet6", "local": "fe80::5c07:aaff:fe79:edd", "prefixlen": 64, "scope": "link"}]},
    {"ifindex": 7, "ifname": "vx0", "flags": ["BROADCAST", "MULTICAST"], "mtu": 1450,
     "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 5, "link": "eth0", "port": 8472,
                                                      "learning": False, "ttl": 0}}, "addr_info": []},
])


def test_parse_links_reads_kind_vni_device_port_learning_ttl_mtu_state_addresses():
    links = parse_links(ADDR_SHOW)
    assert set(links) == {"lo", "eth0", "vx2", "vx0"}
    assert links["vx2"] == Link(name="vx2", kind="vxlan", vni=7, dev="eth0", port=4789, learning=True, ttl=5,
                                mtu=1450, up=True, addresses=("192.168.1.2/24", "fd00::1/64"))
    assert links["vx0"].up is False and links["vx0"].learning is False and links["vx0"].addresses == ()
    assert links["eth0"].kind == "veth" and links["eth0"].vni is None
    assert links["lo"].kind is None and links["lo"].addresses == ()  # scope host is not ours


def test_parse_links_tolerates_missing_and_odd_keys():
    links = parse_links('[{"ifname": "x"}, {"ifname": "y", "flags": "UP", "mtu": "big", '
                        '"linkinfo": {"info_kind": "vxlan", "info_data": {"id": true, "learning": "no"}}, '
                        '"addr_info": [{"local": "nonsense", "prefixlen": 3}, 5, {"local": "10.0.0.1"}]}]')
    assert links["x"] == Link(name="x")
    assert links["y"] == Link(name="y", kind="vxlan")


@pytest.mark.parametrize("garbage", ["", "   ", "not json", '{"ifname": "x"}', "[1]", '[{"name": "x"}]',
                                     '[{"ifname": 5}]', "Error: ...", "[", "null"])
def test_parse_links_rejects_garbage_with_agent_output_error(garbage):
    with pytest.raises(AgentOutputError) as raised:
        parse_links(garbage)
    assert isinstance(raised.value, ValueError)
    assert "ip -j" in str(raised.value)


# ---- setup_batch ----------------------------------------------------------------------------------

EXAMPLE_A = "vxeth1\n  ip=192.168.11.2/29\n  route=192.168.12.0/29:192.168.11.1\n"


def test_setup_of_a_fresh_pod_adds_then_addresses_then_up_then_routes():
    batch = setup_batch(specs(EXAMPLE_A + "vxeth2 mtu=1400 ttl=9 dstport=4789 learning ip=fd00:1::2/64"
                              " route=fd00:2::/64:fd00:1::1"), {})
    assert batch.splitlines() == [
        "link add name vxeth1 type vxlan id 101 dev eth0 dstport 0 nolearning",
        "link add name vxeth2 mtu 1400 type vxlan id 102 dev eth0 dstport 4789 learning ttl 9",
        "link set dev vxeth1 alias kvc:vxeth1",
        "addr replace 192.168.11.2/29 dev vxeth1",
        "link set dev vxeth2 alias kvc:vxeth2",
        "addr replace fd00:1::2/64 dev vxeth2",
        "link set dev vxeth1 up",
        "link set dev vxeth2 up",
        "route replace 192.168.12.0/29 via 192.168.11.1 dev vxeth1",
        "route replace fd00:2::/64 via fd00:1::1 dev vxeth2",
    ]
    assert batch.endswith("\n")


def _link(**kw) -> Link:
    base = dict(name="vxeth1", kind="vxlan", vni=101, dev="eth0", port=8472, learning=False, ttl=0, mtu=1450,
                up=True, addresses=("192.168.11.2/29",), alias="kvc:vxeth1")
    return Link(**{**base, **kw})


def test_matching_link_is_kept_and_only_routes_not_read_are_set_again():
    assert setup_batch(specs(EXAMPLE_A), {"vxeth1": _link()}).splitlines() == [
        "route replace 192.168.12.0/29 via 192.168.11.1 dev vxeth1",
    ]
    routes = specs(EXAMPLE_A)[0].routes
    assert setup_batch(specs(EXAMPLE_A), {"vxeth1": _link(routes=routes)}) == ""


def test_a_link_without_our_alias_gets_it():
    assert setup_batch(specs("vxeth1 ip=192.168.11.2/29 up"), {"vxeth1": _link(alias=None)}).splitlines() == [
        "link set dev vxeth1 alias kvc:vxeth1",
    ]


@pytest.mark.parametrize("change", [dict(vni=100), dict(dev="eth1"), dict(port=4789), dict(learning=True),
                                    dict(ttl=3), dict(learning=None), dict(vni=None)])
def test_link_differing_in_kind_vni_device_port_learning_or_ttl_is_replaced(change):
    lines = setup_batch(specs(EXAMPLE_A), {"vxeth1": _link(**change)}).splitlines()
    assert lines[:2] == ["link del dev vxeth1", "link add name vxeth1 type vxlan id 101 dev eth0 dstport 0 nolearning"]


def test_mtu_is_changed_in_place_and_only_when_asked_for():
    assert "mtu" not in setup_batch(specs("vxeth1"), {"vxeth1": _link(mtu=9000)})
    assert setup_batch(specs("vxeth1 mtu=1400"), {"vxeth1": _link(mtu=9000)}).splitlines()[0] == (
        "link set dev vxeth1 mtu 1400")
    assert "mtu" not in setup_batch(specs("vxeth1 mtu=1400"), {"vxeth1": _link(mtu=1400)})
    assert "link del" not in setup_batch(specs("vxeth1 mtu=1400"), {"vxeth1": _link(mtu=9000)})


def test_kept_link_loses_stale_addresses_and_goes_down_unless_up():
    link = _link(addresses=("192.168.11.2/29", "10.9.9.9/8"))
    assert setup_batch(specs("vxeth1 up=false ip=192.168.11.2/29"), {"vxeth1": link}).splitlines() == [
        "addr del 10.9.9.9/8 dev vxeth1",
        "link set dev vxeth1 down",
    ]


def test_non_vxlan_link_with_the_wanted_name_is_never_touched():
    wanted = specs("vxeth1, vxeth2")
    links = {"vxeth1": Link(name="vxeth1", kind="veth")}
    assert "vxeth1" not in setup_batch(wanted, links)
    assert "vxeth2" in setup_batch(wanted, links)
    (conflict,) = setup_conflicts(wanted, links)
    assert "vxeth1" in conflict and "veth" in conflict


def test_ipv6_underlay_makes_the_link_ipv6():
    (line,) = [l for l in setup_batch(specs("vxeth1"), {}, pod_ips=("fd10::0:1",)).splitlines() if "add" in l]
    assert line.endswith("local fd10::1")
    assert "local" not in setup_batch(specs("vxeth1"), {}, pod_ips=("10.0.0.1",))
    kept = {"vxeth1": _link(local="fd10::1")}
    assert "link add" not in setup_batch(specs("vxeth1"), kept, pod_ips=("fd10::1",))


def test_setup_refuses_a_hand_built_spec_with_unvalidated_words():
    with pytest.raises(ValueError):
        setup_batch([NetworkSpec(network="x", vni=1, name="x; reboot")], {})
    with pytest.raises(ValueError):
        setup_batch([NetworkSpec(network="x", vni="1 dev lo", name="x")], {})  # type: ignore[arg-type]


def test_nothing_to_set_up_is_an_empty_batch():
    assert setup_batch((), parse_links(ADDR_SHOW)) == ""


# ---- fdb ------------------------------------------------------------------------------------------

FDB_SHOW = json.dumps([
    {"mac": "33:33:00:00:00:01", "ifname": "eth0", "flags": ["self"], "state": "permanent"},
    {"mac": "00:00:00:00:00:00", "ifname": "vxeth1", "dst": "10.0.0.2", "flags": ["self"], "state": "permanent"},
    {"mac": "00:00:00:00:00:00", "ifname": "vxeth1", "dst": "10.0.0.3", "flags": ["self"], "state": "permanent"},
    {"mac": "be:ef:00:00:00:01", "ifname": "vxeth1", "dst": "10.0.0.4", "flags": ["self"]},  # learned
    {"mac": "00:00:00:00:00:00", "ifname": "vxeth2", "dst": "fd00:0:0::2", "flags": ["self"]},
    {"mac": "00:00:00:00:00:00", "ifname": "br0", "flags": ["self"], "state": "permanent"},  # no dst
])


def test_parse_fdb_keeps_only_all_zeros_entries_normalised():
    assert parse_fdb(FDB_SHOW) == {"vxeth1": frozenset({"10.0.0.2", "10.0.0.3"}), "vxeth2": frozenset({"fd00::2"})}
    assert parse_fdb("[]") == {}


def test_fdb_lines_render_the_seeds_inspect_format():
    assert fdb_lines(FDB_SHOW) == {
        "vxeth1": ["00:00:00:00:00:00 dst 10.0.0.2 self permanent", "00:00:00:00:00:00 dst 10.0.0.3 self permanent"],
        "vxeth2": ["00:00:00:00:00:00 dst fd00::2 self"],
    }


@pytest.mark.parametrize("garbage", ["", "nope", "{}", "[5]",
                                     '[{"mac": "00:00:00:00:00:00", "ifname": "v", "dst": "not-an-ip"}]'])
def test_parse_fdb_rejects_garbage(garbage):
    with pytest.raises(AgentOutputError):
        parse_fdb(garbage)
    with pytest.raises(AgentOutputError):
        fdb_lines(garbage)


def test_fdb_diff_adds_missing_and_deletes_extra_on_managed_devices_only():
    desired = {"vxeth1": frozenset({"10.0.0.3", "10.0.0.10", "10.0.0.9"}), "vxeth2": frozenset()}
    observed = parse_fdb(FDB_SHOW) | {"other": frozenset({"10.1.1.1"})}
    assert fdb_diff(desired, observed) == FdbDiff(
        add=(("vxeth1", "10.0.0.9"), ("vxeth1", "10.0.0.10")),  # numeric order, not text order
        delete=(("vxeth1", "10.0.0.2"), ("vxeth2", "fd00::2")),
    )


def test_fdb_batch_appends_before_it_deletes():
    desired = {"vxeth1": frozenset({"10.0.0.3", "10.0.0.9"})}
    assert fdb_batch(desired, parse_fdb(FDB_SHOW)).splitlines() == [
        "fdb append 00:00:00:00:00:00 dev vxeth1 dst 10.0.0.9",
        "fdb del 00:00:00:00:00:00 dev vxeth1 dst 10.0.0.2",
    ]


def test_fdb_batch_is_empty_when_converged_whatever_the_ip_spelling():
    assert fdb_batch({"vxeth2": frozenset({"fd00::0:2"})}, parse_fdb(FDB_SHOW)) == ""
    assert fdb_diff({"vxeth2": {"fd00::0:2"}}, parse_fdb(FDB_SHOW)).empty


def test_fdb_diff_never_lets_invalid_desired_values_through():
    desired = {"vxeth1": frozenset({"10.0.0.2", "10.0.0.2; reboot", "fe80::1%eth0"}), "bad dev": frozenset({"1.1.1.1"})}
    diff = fdb_diff(desired, {})
    assert diff.add == (("vxeth1", "10.0.0.2"),)
    assert sorted(diff.invalid) == [("bad dev", "1.1.1.1"), ("vxeth1", "10.0.0.2; reboot"), ("vxeth1", "fe80::1%eth0")]
    assert "reboot" not in fdb_batch(desired, {}) and "bad dev" not in fdb_batch(desired, {})


# ---- for real, in a scratch network namespace ----------------------------------------------------


def _setup(run, wanted, underlay=None) -> tuple[str, subprocess.CompletedProcess]:
    """The protocol: read the links, compute the batch, run it."""
    batch = setup_batch(wanted, parse_links(run(LINKS_ARGV).stdout), pod_ips=(underlay,) if underlay else ())
    return batch, run(batch_argv("ip", 10), stdin=batch, check=False)


@pytest.mark.root
def test_setup_batch_really_configures_and_is_idempotent_and_replaces_a_changed_link(netns):
    wanted = specs(EXAMPLE_A + "vxeth2 up mtu=1400 ttl=9 dstport=4789 learning ip=192.168.13.2/29 "
                   "route=10.20.0.0/16:192.168.13.1\nvx6 id=7 up ip=fd00:1::2/64 route=fd00:2::/64:fd00:1::1")
    batch, done = _setup(netns, wanted)
    assert done.returncode == 0, (batch, done.stderr)

    links = parse_links(netns(LINKS_ARGV).stdout)
    assert links["vxeth1"] == Link(name="vxeth1", kind="vxlan", vni=101, dev="eth0", port=8472, learning=False,
                                   ttl=0, mtu=1450, up=True, addresses=("192.168.11.2/29",), alias="kvc:vxeth1")
    assert (links["vxeth2"].port, links["vxeth2"].learning, links["vxeth2"].ttl, links["vxeth2"].mtu) == (
        4789, True, 9, 1400)
    routes = netns(["ip", "route", "show"]).stdout + netns(["ip", "-6", "route", "show"]).stdout
    for route in ("192.168.12.0/29 via 192.168.11.1 dev vxeth1", "10.20.0.0/16 via 192.168.13.1 dev vxeth2",
                  "fd00:2::/64 via fd00:1::1 dev vx6"):
        assert route in routes

    # Again: everything is kept, nothing fails with "File exists".
    again, done = _setup(netns, wanted)
    assert done.returncode == 0, (again, done.stderr)
    assert "link add" not in again and "link del" not in again
    assert parse_links(netns(LINKS_ARGV).stdout)["vxeth1"].vni == 101

    # A changed VNI replaces the link and configures the new one completely.
    changed = specs(EXAMPLE_A, {"vxeth1": "id=111 up"})
    batch, done = _setup(netns, changed)
    assert done.returncode == 0, (batch, done.stderr)
    assert "link del dev vxeth1" in batch
    link = parse_links(netns(LINKS_ARGV).stdout)["vxeth1"]
    assert (link.vni, link.up, link.addresses) == (111, True, ("192.168.11.2/29",))
    assert "192.168.12.0/29 via 192.168.11.1 dev vxeth1" in netns(["ip", "route", "show"]).stdout


@pytest.mark.root
def test_a_first_setup_stops_at_a_taken_name_without_a_process_to_check_it(netns):
    """The fresh setup exec, as the pod runs it (`sh -c`, in a PID namespace of its own so that the
    release's `kill -TERM 1` reaches its own shell, which as PID 1 ignores it): it sets up a pod without
    links and releases; when a wanted name is taken it exits LINKS_EXIST and stops at that add."""
    wanted = specs(EXAMPLE_A + "vxeth2 ip=192.168.13.2/29")
    argv, batch = setup_exec(wanted, None, timeout=10, terminate_file="")
    assert "link show" not in argv[2] and batch.splitlines()[0].startswith("link add name vxeth1 ")

    def run_fresh():
        return netns(["unshare", "--pid", "--fork", *argv], stdin=batch, check=False)

    done = run_fresh()
    assert done.returncode == 0, done.stderr
    links = parse_links(netns(LINKS_ARGV).stdout)
    assert (links["vxeth1"].up, links["vxeth2"].addresses) == (True, ("192.168.13.2/29",))

    again = run_fresh()  # as after a controller that died between its setup and knowing it
    assert again.returncode == LINKS_EXIST and "File exists" in again.stderr
    assert parse_links(netns(LINKS_ARGV).stdout) == links

    netns(["ip", "link", "del", "vxeth1"])
    netns(["ip", "link", "del", "vxeth2"])
    netns(["ip", "link", "add", "vxeth1", "type", "bridge"])  # something else holds the first name
    taken = run_fresh()
    assert taken.returncode == LINKS_EXIST
    links = parse_links(netns(LINKS_ARGV).stdout)
    assert links["vxeth1"].kind == "bridge" and "vxeth2" not in links


@pytest.mark.root
def test_dstport_unset_gives_the_kernel_default_8472(netns):
    _, done = _setup(netns, specs("vxeth1"))
    assert done.returncode == 0 and "dstport" not in done.stderr  # no "destination port not specified" warning
    assert parse_links(netns(LINKS_ARGV).stdout)["vxeth1"].port == 8472


@pytest.mark.root
def test_ipv6_underlay_link_accepts_ipv6_peers(netns):
    _, done = _setup(netns, specs("vxeth1"), underlay="fd10::1")
    assert done.returncode == 0, done.stderr
    batch = fdb_batch({"vxeth1": frozenset({"fd10::2", "fd10::3"})}, {})
    assert netns(batch_argv("bridge", 10), stdin=batch, check=False).returncode == 0
    assert parse_fdb(netns(FDB_ARGV).stdout)["vxeth1"] == {"fd10::2", "fd10::3"}
    _, done = _setup(netns, specs("vxeth1"), underlay="fd10::1")
    assert done.returncode == 0 and "link add" not in _  # kept: `local` is read back


@pytest.mark.root
def test_fdb_batch_converges_from_a_stale_entry_and_then_is_a_no_op(netns):
    _, done = _setup(netns, specs("vxeth1, vxeth2"))
    assert done.returncode == 0, done.stderr
    netns(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxeth1", "dst", "10.0.0.99"])  # a peer that left
    netns(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxeth1", "dst", "10.0.0.2"])
    desired = {"vxeth1": frozenset({"10.0.0.2", "10.0.0.3"}), "vxeth2": frozenset({"10.0.0.2"})}

    observed = parse_fdb(netns(FDB_ARGV).stdout)
    batch = fdb_batch(desired, observed)
    done = netns(batch_argv("bridge", 10), stdin=batch, check=False)
    assert done.returncode == 0, (batch, done.stderr)
    assert parse_fdb(netns(FDB_ARGV).stdout) == desired

    assert fdb_batch(desired, parse_fdb(netns(FDB_ARGV).stdout)) == ""
    # The same batch run again on stale observations still succeeds: appends of identical entries are
    # accepted, and each delete leaves the device with its other entries.
    done = netns(batch_argv("bridge", 10), stdin=batch, check=False)
    assert done.returncode == 0, (batch, done.stderr)
    assert parse_fdb(netns(FDB_ARGV).stdout) == desired


@pytest.mark.root
def test_fdb_batch_removing_every_peer_of_a_device(netns):
    _, done = _setup(netns, specs("vxeth1"))
    assert done.returncode == 0, done.stderr
    netns(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxeth1", "dst", "10.0.0.5"])
    batch = fdb_batch({"vxeth1": frozenset()}, parse_fdb(netns(FDB_ARGV).stdout))
    assert netns(batch_argv("bridge", 10), stdin=batch, check=False).returncode == 0
    assert parse_fdb(netns(FDB_ARGV).stdout).get("vxeth1", frozenset()) == frozenset()


# ---- properties ----------------------------------------------------------------------------------

_ips = st.sets(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.10", "fd00::1", "fd00::0:2"]), max_size=4)
_fdb = st.dictionaries(st.sampled_from(["vxeth0", "vxeth1", "other"]), _ips.map(frozenset), max_size=3)


@given(desired=_fdb, observed=_fdb)
def test_applying_the_diff_yields_exactly_the_desired_peers_on_managed_devices(desired, observed):
    def norm(ips):
        return {str(ipaddress.ip_address(ip)) for ip in ips}

    diff = fdb_diff(desired, observed)
    result = {dev: norm(ips) for dev, ips in observed.items()}
    for dev, ip in diff.add:
        result.setdefault(dev, set()).add(ip)
    for dev, ip in diff.delete:
        result[dev].remove(ip)
    for dev in desired:
        assert result.get(dev, set()) == norm(desired[dev])
    for dev in set(observed) - set(desired):
        assert result[dev] == norm(observed[dev])  # not ours: untouched
    assert (fdb_batch(desired, observed) == "") == diff.empty


@given(st.one_of(st.text(), st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                         lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                             st.sampled_from(["ifname", "mac", "dst", "linkinfo", "info_data",
                                                              "addr_info", "flags", "mtu", "id", "local",
                                                              "prefixlen"]), c, max_size=4),
                                         max_leaves=12).map(json.dumps)))
def test_agent_output_parsers_raise_only_agent_output_error(stdout):
    for parse in (parse_links, parse_fdb, fdb_lines):
        try:
            parse(stdout)
        except AgentOutputError:
            pass


# ---- differences, stale links, the state read, convergence -----------------------------------------


def test_differences_name_each_option_and_say_which_need_a_new_link():
    (spec,) = specs("vxeth1 ip=192.168.11.3/29 mtu=1400", {"vxeth1": "id=201 up dstport=4789"})
    diffs = {d.what: d for d in differences(spec, _link(mtu=1450, up=False, routes=()))}
    assert [str(d) for d in diffs.values()] == ["id 101 → 201", "dstport 8472 → 4789", "mtu 1450 → 1400",
                                                "ip 192.168.11.2/29 → 192.168.11.3/29", "up false → true"]
    assert {what for what, d in diffs.items() if d.replace} == {"id", "dstport"}
    assert differences(specs("vxeth1 ip=192.168.11.2/29")[0], _link()) == ()


def test_routes_differ_only_when_they_were_read():
    (spec,) = specs(EXAMPLE_A)
    assert differences(spec, _link()) == ()  # routes not read: nothing known to differ
    (diff,) = differences(spec, _link(routes=()))
    assert str(diff) == "route none → 192.168.12.0/29:192.168.11.1" and not diff.replace


def test_actual_spec_describes_the_kernel_in_the_seed_format():
    (spec,) = specs(EXAMPLE_A)
    link = _link(vni=100, mtu=1400, port=4789, routes=())
    assert actual_spec(spec, link).describe() == "dev:eth0 dstport:4789 id:100 ip:192.168.11.2/29 name:vxeth1 " \
                                                 "type:vxlan up:true"


def test_stale_links_are_ours_whose_network_is_no_longer_named_or_whose_interface_was_renamed():
    links = {"vxeth1": _link(), "vxeth2": _link(name="vxeth2", alias="kvc:vxeth2"),
             "old": _link(name="old", alias="kvc:vxeth3"), "mine": _link(name="mine", alias=None),
             "veth": Link(name="veth", kind="veth", alias="kvc:vxeth9")}
    # vxeth2 still named but not resolved (its entry broke): kept; vxeth3 now lives on interface "new"
    wanted = specs("vxeth1\nvxeth3 name=new", {**CONFIGMAP, "vxeth3": "id=103"})
    assert stale_links(links, wanted, ["vxeth1", "vxeth2", "vxeth3"]) == ("old",)
    assert stale_links(links, (), []) == ("old", "vxeth1", "vxeth2")


def test_plan_links_replaces_what_the_kernel_cannot_change_and_says_what_changed():
    (spec,) = specs("vxeth1 ip=192.168.11.2/29", {"vxeth1": "id=201 up"})
    plan = plan_links([spec], {"vxeth1": _link(routes=()), "gone": _link(name="gone")}, remove=("gone",))
    assert plan.batch.splitlines()[:3] == ["link del dev gone", "link del dev vxeth1",
                                           "link add name vxeth1 type vxlan id 201 dev eth0 dstport 0 nolearning"]
    assert plan.replaced == {"vxeth1"} and plan.removed == ("gone",)
    assert [str(d) for d in plan.changed["vxeth1"]] == ["id 101 → 201"]
    assert differences(spec, plan.after["vxeth1"]) == ()


STATE = (ADDR_SHOW + "\n--kvc--\n"
         '[{"dst":"192.168.12.0/29","gateway":"192.168.1.1","dev":"vx2","flags":[]},'
         '{"dst":"192.168.1.0/24","dev":"vx2","protocol":"kernel","scope":"link","flags":[]},'
         '{"dst":"default","gateway":"10.0.0.254","dev":"eth0","flags":[]}]\n--kvc--\n'
         '[{"dst":"fd00:2::/64","gateway":"fd00::2","dev":"vx2","flags":[]}]\n--kvc--\n' + FDB_SHOW)


def test_parse_state_reads_links_gateway_routes_of_both_families_and_the_fdb():
    state = parse_state(STATE)
    assert [str(r) for r in state.links["vx2"].routes] == ["192.168.12.0/29:192.168.1.1", "fd00:2::/64:fd00::2"]
    assert [str(r) for r in state.links["eth0"].routes] == ["0.0.0.0/0:10.0.0.254"]
    assert state.links["vx0"].routes == ()
    assert state.fdb == parse_fdb(FDB_SHOW) and fdb_lines(state.fdb_text) == fdb_lines(FDB_SHOW)
    without_ipv6 = STATE.replace('[{"dst":"fd00:2::/64","gateway":"fd00::2","dev":"vx2","flags":[]}]', "")
    assert len(parse_state(without_ipv6).links["vx2"].routes) == 1
    with pytest.raises(AgentOutputError):
        parse_state(ADDR_SHOW)


def test_converge_argv_carries_only_a_plan_links_batch():
    argv = converge_argv(5, "link set dev vxeth1 mtu 1400\n")
    assert argv[:4] == ["timeout", "5", "sh", "-c"]  # one deadline for both commands
    assert "<<'KVC'\nlink set dev vxeth1 mtu 1400\nKVC\n" in argv[4]
    for bad in ("", "link set dev x alias $(reboot)\n", "a\nKVC\nreboot\n".replace("KVC", "KVC'"), "x;y\n"):
        with pytest.raises(ValueError):
            converge_argv(5, bad)


@pytest.mark.root
def test_converge_changes_in_place_or_replaces_the_link_with_its_fdb_in_one_exec(netns):
    first = specs(EXAMPLE_A)
    netns(converge_argv(10, plan_links(first, {}).batch), stdin="fdb append 00:00:00:00:00:00 dev vxeth1 dst 10.0.0.2\n")
    state = parse_state(netns(STATE_ARGV).stdout)
    assert differences(first[0], state.links["vxeth1"]) == () and state.fdb == {"vxeth1": {"10.0.0.2"}}

    # MTU and a route: in place (the link, so its fdb, stays)
    moved = specs("vxeth1 ip=192.168.11.2/29 mtu=1400 route=192.168.13.0/29:192.168.11.1")
    plan = plan_links(moved, state.links)
    assert not plan.replaced and "link add" not in plan.batch
    netns(converge_argv(10, plan.batch), stdin="")
    state = parse_state(netns(STATE_ARGV).stdout)
    assert differences(moved[0], state.links["vxeth1"]) == () and state.fdb == {"vxeth1": {"10.0.0.2"}}

    # a new VNI: replaced, and the fdb put back by the same exec
    renumbered = specs("vxeth1 ip=192.168.11.2/29 mtu=1400", {"vxeth1": "id=201 up"})
    plan = plan_links(renumbered, state.links)
    assert plan.replaced == {"vxeth1"}
    netns(converge_argv(10, plan.batch), stdin="fdb append 00:00:00:00:00:00 dev vxeth1 dst 10.0.0.2\n")
    state = parse_state(netns(STATE_ARGV).stdout)
    assert differences(renumbered[0], state.links["vxeth1"]) == () and state.fdb == {"vxeth1": {"10.0.0.2"}}
    assert state.links["vxeth1"].alias == "kvc:vxeth1"
