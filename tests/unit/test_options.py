"""The network option grammar: the seed README's examples, our additions, strict validation."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kube_vxlan_controller.options import (
    KERNEL_DEFAULT_DSTPORT,
    MAX_NETWORKS,
    NetworkSpec,
    Resolution,
    Route,
    is_ifname,
    network_names,
    parse_configmap,
    resolve,
    with_underlays,
)

POD = "default/a"
#: the seed's network ConfigMap plus the example's networks (deploy/networks.yaml)
CONFIGMAP = {
    "vxeth0": "id=100 up",
    "vxeth1": "id=101 up",
    "vxeth2": "id=102 up",
    "vxeth3": "id=103 up",
}


def one(annotation: str, configmap=CONFIGMAP) -> NetworkSpec:
    result = resolve(annotation, configmap, pod_key=POD)
    assert result.errors == ()
    assert len(result.networks) == 1
    return result.networks[0]


def errors_of(annotation: str, configmap=CONFIGMAP) -> tuple[str, ...]:
    result = resolve(annotation, configmap, pod_key=POD)
    assert result.errors, result
    return result.errors


# ---- the seed README, "Network Options" ----------------------------------------------------------


def test_seed_configmap_example_parses_to_raw_options():
    parsed = parse_configmap({"vxeth0": "id=1000 dev=tun0", "vxeth1": "id=1001 up"})
    assert dict(parsed["vxeth0"]) == {"id": "1000", "dev": "tun0"}
    assert dict(parsed["vxeth1"]) == {"id": "1001", "up": True}


def test_configmap_bare_number_means_id():
    assert dict(parse_configmap({"vxeth0": "1000"})["vxeth0"]) == {"id": "1000"}
    assert one("vxeth0", {"vxeth0": "1000"}).vni == 1000


SEED_CONFIGMAP = {"vxeth0": "id=1000 dev=tun0", "vxeth1": "id=1001 up"}


def test_seed_multiline_annotation_example():
    annotation = (
        "vxeth0\n"
        "  ip=192.168.10.1/24\n"
        "  route=192.168.10.0/24:192.168.100.1\n"
        "vxeth1\n"
        "  up=false\n"
    )
    result = resolve(annotation, SEED_CONFIGMAP, pod_key=POD)
    assert result.errors == ()
    assert result.networks == (
        NetworkSpec(
            network="vxeth0",
            vni=1000,
            name="vxeth0",
            dev="tun0",
            ip=ipaddress.ip_interface("192.168.10.1/24"),
            routes=(Route(ipaddress.ip_network("192.168.10.0/24"), ipaddress.ip_address("192.168.100.1")),),
        ),
        # up=false in the pod overrides `up` in the ConfigMap
        NetworkSpec(network="vxeth1", vni=1001, name="vxeth1", up=False),
    )


def test_seed_one_line_annotation_example():
    result = resolve("vxeth0 dev=tun0, vxeth1", SEED_CONFIGMAP, pod_key=POD)
    assert result.errors == ()
    assert result.networks == (
        NetworkSpec(network="vxeth0", vni=1000, name="vxeth0", dev="tun0"),
        NetworkSpec(network="vxeth1", vni=1001, name="vxeth1", up=True),
    )


def test_seed_usage_example_names_interfaces_after_networks():
    result = resolve("vxeth0, vxeth1", CONFIGMAP, pod_key=POD)
    assert [(n.network, n.name, n.vni, n.dev, n.type, n.up) for n in result.networks] == [
        ("vxeth0", "vxeth0", 100, "eth0", "vxlan", True),
        ("vxeth1", "vxeth1", 101, "eth0", "vxlan", True),
    ]


def test_seed_route_example():
    spec = one("vxeth0 route=192.168.2.0/24:192.168.1.1")
    assert spec.routes == (Route(ipaddress.ip_network("192.168.2.0/24"), ipaddress.ip_address("192.168.1.1")),)


def test_type_vxlan_is_the_default_and_the_only_type():
    assert one("vxeth0").type == "vxlan"
    assert one("vxeth0 type=vxlan").type == "vxlan"
    (error,) = errors_of("vxeth0 type=gre")
    assert "'gre'" in error and "vxlan" in error


def test_name_option_names_the_interface():
    spec = one("vxeth0 name=vx0")
    assert (spec.network, spec.name) == ("vxeth0", "vx0")


def test_up_flag_alone_means_true():
    assert one("vxeth0 up", {"vxeth0": "id=5"}).up is True
    assert one("vxeth0 up=true", {"vxeth0": "id=5"}).up is True
    assert one("vxeth0", {"vxeth0": "id=5"}).up is False


def test_id_given_only_in_the_annotation_is_enough():
    assert one("mynet id=7", {}).vni == 7


def test_network_without_id_anywhere_is_an_error_and_others_survive():
    result = resolve("nowhere, vxeth1", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth1"]
    (error,) = result.errors
    assert "default/a" in error and "'nowhere'" in error and "id" in error


# ---- the seed README, "Inspect" and "List Pods" --------------------------------------------------

#: the seed example's annotations, in both spellings the original's manifests used
EXAMPLE = {
    "a": "vxeth1\n  ip=192.168.11.2/29\n  route=192.168.12.0/29:192.168.11.1\n",
    "b": "vxeth2\n  up\n  ip=192.168.12.2/29\n  route=192.168.11.0/29:192.168.12.1\n",
    "gw": "vxeth1 up ip=192.168.11.1/29\nvxeth2\n  ip=192.168.12.1/29\n",
}


def test_seed_inspect_net_lines():
    def describe(pod):
        return [n.describe() for n in resolve(EXAMPLE[pod], CONFIGMAP, pod_key=f"default/{pod}").networks]

    assert describe("a") == [
        "dev:eth0 id:101 ip:192.168.11.2/29 name:vxeth1 route:192.168.12.0/29:192.168.11.1 type:vxlan up:true"
    ]
    assert describe("b") == [
        "dev:eth0 id:102 ip:192.168.12.2/29 name:vxeth2 route:192.168.11.0/29:192.168.12.1 type:vxlan up:true"
    ]
    assert describe("gw") == [
        "dev:eth0 id:101 ip:192.168.11.1/29 name:vxeth1 type:vxlan up:true",
        "dev:eth0 id:102 ip:192.168.12.1/29 name:vxeth2 type:vxlan up:true",
    ]


def test_seed_list_pods_columns():
    lines = [
        f"default/gw {n.network} {n.ip}" for n in resolve(EXAMPLE["gw"], CONFIGMAP, pod_key="default/gw").networks
    ]
    assert lines == ["default/gw vxeth1 192.168.11.1/29", "default/gw vxeth2 192.168.12.1/29"]


def test_describe_lists_every_route_and_our_options_sorted():
    spec = one(
        "vxeth0 route=10.1.0.0/16:192.168.1.1 route=10.2.0.0/16:192.168.1.1 dstport=4789 mtu=1400 ttl=9 learning"
    )
    assert spec.describe() == (
        "dev:eth0 dstport:4789 id:100 learning:true mtu:1400 name:vxeth0 "
        "route:10.1.0.0/16:192.168.1.1 route:10.2.0.0/16:192.168.1.1 ttl:9 type:vxlan up:true"
    )


# ---- ours on top --------------------------------------------------------------------------------


def test_dstport_unset_means_the_kernel_default_like_the_original():
    spec = one("vxeth0")
    assert spec.dstport is None
    assert spec.effective_dstport == KERNEL_DEFAULT_DSTPORT == 8472
    assert one("vxeth0 dstport=0").effective_dstport == 8472


def test_dstport_4789_is_the_iana_port():
    assert one("vxeth0 dstport=4789").effective_dstport == 4789


@pytest.mark.parametrize(
    "option",
    ["dstport=65536", "dstport=-1", "dstport=+5", "dstport=4789x", "dstport", "mtu=67", "mtu=65536",
     "ttl=0", "ttl=256", "id=16777216", "id=-1", "id=abc", "id=1_000", "id=١٢", "id= 5", "id=", "id",
     "learning=yes", "up=1", "up="],
)
def test_out_of_range_or_malformed_values_are_rejected(option):
    (error,) = errors_of(f"vxeth0 {option}")
    assert "default/a" in error and "'vxeth0'" in error


@pytest.mark.parametrize("option,field,value", [
    ("dstport=65535", "dstport", 65535), ("mtu=68", "mtu", 68), ("mtu=9000", "mtu", 9000),
    ("ttl=1", "ttl", 1), ("ttl=255", "ttl", 255), ("id=0", "vni", 0), ("id=16777215", "vni", 16777215),
    ("learning", "learning", True), ("learning=false", "learning", False),
])
def test_boundary_values_are_accepted(option, field, value):
    assert getattr(one(f"vxeth0 {option}"), field) == value


def test_learning_is_off_by_default():
    assert one("vxeth0").learning is False


def test_ipv6_address_and_route_split_after_the_prefix_length():
    spec = one("vxeth0 ip=fd00:1::2/64 route=fd00:2::/64:fd00:1::1")
    assert spec.ip == ipaddress.ip_interface("fd00:1::2/64")
    assert spec.routes == (Route(ipaddress.ip_network("fd00:2::/64"), ipaddress.ip_address("fd00:1::1")),)
    assert "route:fd00:2::/64:fd00:1::1" in spec.describe()


@pytest.mark.parametrize("route", ["10.0.0.0/8:fd00::1", "fd00:2::/64:10.0.0.1"])
def test_route_mixing_ipv4_and_ipv6_is_rejected(route):
    (error,) = errors_of(f"vxeth0 route={route}")
    assert route in error


@pytest.mark.parametrize(
    "route", ["garbage", "10.0.0.0/8", "10.0.0.0:10.0.0.1", "10.0.0.5/8:10.0.0.1", "10.0.0.0/33:10.0.0.1",
              "10.0.0.0/8:10.0.0.300", "fe80::/64:fe80::1%eth0", "route"],
)
def test_malformed_routes_are_rejected(route):
    (error,) = errors_of(f"vxeth0 route={route}")
    assert "route" in error


def test_conflicting_routes_to_one_subnet_are_rejected():
    (error,) = errors_of("vxeth0 route=10.0.0.0/8:192.168.1.1 route=10.0.0.0/8:192.168.1.2")
    assert "10.0.0.0/8" in error


@pytest.mark.parametrize("ip", ["192.168.1.300/24", "1.2.3.4/33", "abc", "fe80::1%eth0/64", "01.2.3.4/8"])
def test_malformed_addresses_are_rejected(ip):
    (error,) = errors_of(f"vxeth0 ip={ip}")
    assert repr(ip) in error


def test_annotation_routes_replace_configmap_routes():
    configmap = {"vxeth0": "id=1 route=10.1.0.0/16:192.168.0.1 route=10.2.0.0/16:192.168.0.1"}
    assert len(one("vxeth0", configmap).routes) == 2
    spec = one("vxeth0 route=10.3.0.0/16:192.168.0.1", configmap)
    assert [str(r.dst) for r in spec.routes] == ["10.3.0.0/16"]


def test_pod_options_override_configmap_key_by_key():
    spec = one("vxeth0 dev=tun1 mtu=1400", {"vxeth0": "id=9 dev=tun0 up mtu=1300 ttl=4"})
    assert (spec.vni, spec.dev, spec.up, spec.mtu, spec.ttl) == (9, "tun1", True, 1400, 4)


# ---- strict validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["name=vxeth01234567890", "dev=eth0123456789abc", "name=a/b", "name=a:b",
                                    "name=..", "dev=.", "name=eth0", "name=lo", "name=wlan0 dev=wlan0"])
def test_bad_interface_names_are_rejected(option):
    (error,) = errors_of(f"vxeth0 {option}")
    assert "name" in error or "dev" in error


def test_network_name_longer_than_15_characters_is_rejected():
    result = resolve("averyveryverylongname id=1, vxeth1", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth1"]
    (error,) = result.errors
    assert "averyveryverylongname" in error


def test_unknown_option_is_rejected():
    (error,) = errors_of("vxeth0 colour=blue")
    assert "'colour'" in error


@pytest.mark.parametrize("value", ["$(reboot)", "`id`", "a;b", "a|b", "a&&b", "a>b", "'q'", '"q"', "a\\b",
                                   "$HOME", "a*", "~root", "{a..b}", "a\x00b", "a\x1bb"])
@pytest.mark.parametrize("key", ["id", "name", "dev", "ip", "route", "type", "dstport", "mtu", "ttl", "up"])
def test_shell_metacharacters_are_rejected_in_every_option(key, value):
    result = resolve(f"vxeth0 {key}={value}, vxeth1", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth1"]
    (error,) = result.errors
    assert "default/a" in error and "'vxeth0'" in error


def test_shell_metacharacters_in_network_names_are_rejected():
    result = resolve("$(reboot), vx;eth, vxeth1", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth1"]
    assert len(result.errors) == 2


def test_duplicate_network_is_an_error_for_the_later_one():
    result = resolve("vxeth0 ip=10.0.0.1/24\nvxeth0 ip=10.0.0.2/24", CONFIGMAP, pod_key=POD)
    assert [str(n.ip) for n in result.networks] == ["10.0.0.1/24"]
    (error,) = result.errors
    assert "'vxeth0'" in error and "more than once" in error


def test_two_networks_with_one_interface_name_error_for_the_later_one():
    result = resolve("vxeth0 name=vx, vxeth1 name=vx", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth0"]
    (error,) = result.errors
    assert "'vxeth1'" in error and "'vx'" in error


def test_network_name_equal_to_another_networks_interface_name_collides():
    result = resolve("vxeth0 name=vxeth1, vxeth1", CONFIGMAP, pod_key=POD)
    assert [n.name for n in result.networks] == ["vxeth1"]
    assert len(result.errors) == 1


def test_long_bad_values_are_truncated_in_messages():
    (error,) = errors_of("vxeth0 ip=" + "9" * 500)
    assert "9" * 60 + "…" in error
    assert "9" * 61 not in error
    assert len(error) < 250


def test_configmap_errors_are_reported_to_pods_using_the_network_only():
    configmap = {**CONFIGMAP, "broken": "id=abc", "vxeth2": "id=102 colour=blue"}
    assert resolve("vxeth1", configmap, pod_key=POD).errors == ()
    (error,) = errors_of("vxeth1, broken", configmap)
    assert "'broken'" in error and "'abc'" in error and "ConfigMap" in error
    (error,) = errors_of("vxeth2", configmap)
    assert "'colour'" in error and "ConfigMap" in error


def test_pod_value_overriding_a_bad_configmap_value_works():
    assert one("vxeth0 id=5", {"vxeth0": "id=abc"}).vni == 5


def test_oversized_configmap_entry_is_an_error_for_its_network():
    (error,) = errors_of("vxeth0, vxeth1", {**CONFIGMAP, "vxeth0": "id=1 " + "x" * 5000})[:1]
    assert "'vxeth0'" in error and "limit" in error


# ---- size limits ---------------------------------------------------------------------------------

MB = 1 << 20


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * MB,  # one gigantic network name
        "huge ip=" + "1" * MB,  # one gigantic value
        "huge\n" + "  up\n" * (MB // 5),  # a network with endless continuation lines
        ",".join(["n"] * (MB // 2)),  # half a million networks
        "\n" * MB,  # nothing at all
        "x " * (MB // 2),  # endless options
        " , " * (MB // 3),
        "=" * MB,
        "spaces" + " " * MB + "x",  # a backtracking regex over this is quadratic
        "\t" * MB + ",",
        " ," * (MB // 2),
    ],
)
def test_megabyte_annotation_keeps_valid_networks(hostile):
    """Speed is the linearity test's job below (a ratio, not a wall-clock bound a loaded machine breaks)."""
    annotation = "vxeth0 ip=10.0.0.1/24\nvxeth1\n" + hostile + "\nvxeth2"
    result = resolve(annotation, CONFIGMAP, pod_key=POD)
    names = network_names(annotation)
    assert [n.network for n in result.networks][:2] == ["vxeth0", "vxeth1"]
    assert names[:2] == ("vxeth0", "vxeth1")
    assert all(len(e) < 400 for e in result.errors)
    assert len(result.errors) <= MAX_NETWORKS + 1


def test_resolve_time_grows_linearly_with_annotation_size():
    def cost(n):
        text = "vxeth0\n" + "  up\n" * n + ",".join(["n"] * n) + " x" * n + " " * n + ",\t" * n
        started = time.perf_counter()
        resolve(text, CONFIGMAP, pod_key=POD)
        return time.perf_counter() - started

    # the least of five runs each: a busy machine (a CI run beside other work) preempts some of them
    small, big = min(cost(20_000) for _ in range(5)), min(cost(160_000) for _ in range(5))
    assert big < small * 8 * 4  # 8× the input, well under a quadratic 64×


def test_networks_beyond_the_limit_are_rejected_with_one_message():
    annotation = ",".join(f"n{i} id={i}" for i in range(MAX_NETWORKS + 10))
    result = resolve(annotation, {}, pod_key=POD)
    assert len(result.networks) == MAX_NETWORKS
    (error,) = result.errors
    assert f"more than {MAX_NETWORKS}" in error and f"'n{MAX_NETWORKS}'" in error
    assert len(network_names(annotation)) == MAX_NETWORKS


def test_oversized_network_is_rejected_alone():
    result = resolve("vxeth0 ip=10.0.0.1/24\n  route=" + "x" * 2000 + "\nvxeth1", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth1"]
    (error,) = result.errors
    assert "'vxeth0'" in error and "limit" in error


# ---- grammar corners -----------------------------------------------------------------------------


def test_spaces_around_commas_do_not_continue_a_network():
    result = resolve("vxeth0 up ,  vxeth1 , vxeth2", CONFIGMAP, pod_key=POD)
    assert [n.network for n in result.networks] == ["vxeth0", "vxeth1", "vxeth2"]


def test_tabs_and_crlf_are_whitespace():
    result = resolve("vxeth0\r\n\tip=10.0.0.1/24\r\nvxeth1\t mtu=1400\r\n", CONFIGMAP, pod_key=POD)
    assert result.errors == ()
    assert [(n.network, str(n.ip), n.mtu) for n in result.networks] == [
        ("vxeth0", "10.0.0.1/24", None), ("vxeth1", "None", 1400)
    ]


def test_leading_indented_network_with_nothing_to_continue_is_a_network():
    assert one("   vxeth0 mtu=1400").mtu == 1400


def test_empty_and_missing_annotations_ask_for_nothing():
    for annotation in (None, "", "\n\n", " , ,"):
        assert resolve(annotation, CONFIGMAP, pod_key=POD) == Resolution()
        assert network_names(annotation) == ()


def test_network_names_are_cheap_names_only_without_invalid_ones():
    assert network_names("vxeth0 id=abc\n  ip=x\nbad$name, vxeth1, vxeth0") == ("vxeth0", "vxeth1")


def test_is_ifname():
    assert is_ifname("vxeth0") and is_ifname("a" * 15) and is_ifname("a.b-c_d")
    assert not any(is_ifname(v) for v in ("", "a" * 16, ".", "..", "a b", "a/b", "ä", None, 5))


# ---- properties ----------------------------------------------------------------------------------

# Text that looks like the grammar, so hypothesis reaches the validators and not only the splitter.
_word = st.sampled_from(
    ["vxeth0", "vxeth1", "vx", "id=1", "id=16777216", "up", "up=false", "ip=10.0.0.1/24", "ip=fd00::1/64",
     "route=10.1.0.0/16:10.0.0.254", "route=fd00:2::/64:fd00::1", "route=x", "dstport=4789", "mtu=9000",
     "ttl=0", "learning", "name=vx", "dev=eth1", "type=gre", "=", "$(x)", "é", ","]
)
_annotation = st.one_of(
    st.text(),
    st.lists(st.one_of(_word, st.sampled_from([" ", "\n", "\n  ", ", ", "\t", "\r\n"]), st.text(max_size=5)),
             max_size=40).map("".join),
)
_configmap = st.dictionaries(st.one_of(st.sampled_from(["vxeth0", "vxeth1", "vx"]), st.text(max_size=8)),
                             st.one_of(st.text(max_size=30), st.lists(_word, max_size=6).map(" ".join)),
                             max_size=4)


def _valid(spec: NetworkSpec) -> bool:
    return (
        is_ifname(spec.network) and is_ifname(spec.name) and is_ifname(spec.dev)
        and spec.name != spec.dev and spec.type == "vxlan"
        and 0 <= spec.vni <= 16_777_215
        and (spec.dstport is None or 0 <= spec.dstport <= 65535)
        and (spec.mtu is None or 68 <= spec.mtu <= 65535)
        and (spec.ttl is None or 1 <= spec.ttl <= 255)
        and all(r.dst.version == r.via.version for r in spec.routes)
    )


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(annotation=_annotation, configmap=_configmap)
def test_any_annotation_and_configmap_yield_a_resolution_never_an_exception(annotation, configmap):
    result = resolve(annotation, configmap, pod_key=POD)
    assert isinstance(result, Resolution)
    assert all(_valid(spec) for spec in result.networks)
    assert all(isinstance(e, str) and e.startswith(f"pod {POD}: ") for e in result.errors)
    assert not any("internal error" in e for e in result.errors)
    assert len({n.network for n in result.networks}) == len(result.networks)
    assert len({n.name for n in result.networks}) == len(result.networks)
    assert {n.network for n in result.networks} <= set(network_names(annotation))
    parse_configmap(configmap)


@given(annotation=_annotation, configmap=_configmap)
def test_describe_is_deterministic(annotation, configmap):
    first = resolve(annotation, dict(configmap), pod_key=POD)
    again = resolve(annotation, dict(reversed(list(configmap.items()))), pod_key=POD)
    assert first == again
    assert [n.describe() for n in first.networks] == [n.describe() for n in again.networks]
    for spec in first.networks:
        words = spec.describe().split(" ")
        assert [w.split(":", 1)[0] for w in words] == sorted(w.split(":", 1)[0] for w in words)


def test_underlay_option_picks_the_address_family_of_the_network():
    dual = ("10.66.0.2", "fd00:66::2")
    (default, v6, v4) = resolve("a\nb underlay=ipv6\nc underlay=ipv4", {"a": "id=1", "b": "id=2", "c": "id=3"},
                                pod_key=POD).networks
    assert (default.underlay_ip(dual), v6.underlay_ip(dual), v4.underlay_ip(dual)) == dual + ("10.66.0.2",)
    assert "underlay:ipv6" in v6.describe() and "underlay" not in default.describe()
    assert v6.underlay_ip(("10.66.0.2",)) is None


def test_a_bad_underlay_value_skips_the_network_with_a_message():
    resolution = resolve("a underlay=ipv5", {"a": "id=1"}, pod_key=POD)
    assert resolution.networks == () and "bad underlay 'ipv5'" in resolution.errors[0]


def test_a_pod_without_an_address_of_the_networks_family_is_not_a_member():
    resolution = resolve("a underlay=ipv6,b", {"a": "id=1", "b": "id=2"}, pod_key=POD)
    kept = with_underlays(resolution, ("10.66.0.2",), pod_key=POD)
    assert [spec.network for spec in kept.networks] == ["b"]
    assert kept.errors == ("pod default/a: network 'a': underlay=ipv6 but the pod has no IPv6 address (podIPs "
                           "10.66.0.2): not a member",)
    assert with_underlays(resolution, (), pod_key=POD) == resolution  # addresses unknown yet: decided later
