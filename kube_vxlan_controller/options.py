"""The network option grammar: pod annotation + network ConfigMap → validated `NetworkSpec`s.

Pure code: no I/O, no kubernetes, no threads. Everything that later reaches a command in a pod
(`agent.py`) comes out of here as a typed, validated value, so nothing a pod author wrote reaches an
argv unchecked.

Grammar (the original's, see the seed README "Network Options"):

- ConfigMap: one entry per network, `{network: "id=1000 dev=tun0 up"}`; options are separated by
  spaces or tabs; a bare number means `id=` (backwards compatibility).
- Annotation (`vxlan.openvnf.org/networks`): networks are separated by commas or newlines; a line
  that starts with a space or tab continues the previous network's options; the first word of a
  network is its name, the rest are options.
- An option is `key=value` (split at the first `=`), or `key` alone, meaning true; the values `true`
  and `false` are booleans.
- Pod options override ConfigMap options key by key. `route=` may repeat; the annotation's routes,
  if it has any, replace the ConfigMap's.

Options: `type` (only `vxlan`), `id` (VNI 0–16777215, mandatory after merging), `name` (interface
name, default: the network name), `dev` (underlay device, default `eth0`), `up`, `ip` (CIDR, IPv4 or
IPv6), `route=DST/LEN:GATEWAY` (IPv6: `fd00:2::/64:fd00:1::1`, split at the first `:` after the
prefix length), and ours on top: `dstport` (0–65535; unset = `dstport 0` = the kernel's 8472, what
the original used, so pods it set up keep talking to ours), `mtu` (68–65535), `ttl` (1–255),
`learning` (default off), `underlay` (`ipv4` or `ipv6`: which of the pod's addresses carries the
network's VXLAN packets and is its fdb `dst` at the peers; default: the pod's primary IP, `status.podIP`).
`with_underlays` drops, with one message each, the networks a pod has no address of the family for.

Errors never raise out of the public API: `resolve` returns the valid networks and one message per
problem, each naming the pod, the network and the offending value (truncated). A bad network is
skipped; the pod's other networks survive. Work is linear in the annotation's size: each network's
text is capped (`MAX_NETWORK_CHARS`) and so is the number of networks (`MAX_NETWORKS`); only the
offending networks are rejected.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping, Sequence, Union

__all__ = [
    "DEFAULT_DEV",
    "DEFAULT_TYPE",
    "KERNEL_DEFAULT_DSTPORT",
    "MAX_NETWORKS",
    "MAX_NETWORK_CHARS",
    "NetworkSpec",
    "Resolution",
    "Route",
    "is_ifname",
    "network_names",
    "parse_configmap",
    "resolve",
    "with_underlays",
]

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]

DEFAULT_DEV = "eth0"
DEFAULT_TYPE = "vxlan"
#: What a vxlan link created with `dstport 0` (or without dstport) uses: Linux's pre-IANA port.
KERNEL_DEFAULT_DSTPORT = 8472
VNI_MAX = 16_777_215

#: One network's text (its name line and continuation lines), or one ConfigMap entry, longer than
#: this is rejected as a whole: no sane network needs 1 KiB of options, and the cap keeps a 1 MB
#: annotation from costing more than a scan.
MAX_NETWORK_CHARS = 1024
#: Networks per pod beyond this are rejected (with one message naming them).
MAX_NETWORKS = 64
#: Bad values are shown in messages up to this many characters, then "…".
MAX_SHOWN_CHARS = 60

# The kernel's rule (dev_valid_name) is looser; this is the portable subset that is also safe in an
# argv and in `ip -batch` text (no quotes, no `#`, no whitespace, no `/`, no `:`).
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: int() would accept "١٢", "+5", "1_0", " 5"
_OPTION_SEP = re.compile(r"[ \t\r\f\v]+")
_WHITESPACE = " \t\r\f\v"
_WORD = re.compile(r"[^ \t\r\f\v]+")

_BOOL_KEYS = frozenset({"up", "learning"})
_INT_RANGES = {
    "id": (0, VNI_MAX),
    "dstport": (0, 65535),
    "mtu": (68, 65535),
    "ttl": (1, 255),
}
_TEXT_KEYS = frozenset({"type", "name", "dev", "ip", "route", "underlay"})
#: `underlay=` values → IP version
UNDERLAYS = {"ipv4": 4, "ipv6": 6}
KNOWN_KEYS = _BOOL_KEYS | frozenset(_INT_RANGES) | _TEXT_KEYS

# Raw options may carry a parse problem under this key. Tokenising splits on whitespace, so no option
# key written by a user can contain a space: the key cannot collide with user input.
_PROBLEM = " problem"


@dataclass(frozen=True, slots=True)
class Route:
    """`ip route replace DST via VIA dev <interface>`; both ends are of the same IP version."""

    dst: IPNetwork
    via: IPAddress

    def __str__(self) -> str:
        return f"{self.dst}:{self.via}"


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """One validated network of one pod: what to create in the pod and how.

    `network` is the network's name (what pods share to become peers); `name` is the interface
    created in the pod (defaults to the network name). Every field has been validated: values can go
    into an argv as they are.
    """

    network: str
    vni: int
    name: str
    dev: str = DEFAULT_DEV
    type: str = DEFAULT_TYPE
    up: bool = False
    ip: IPInterface | None = None
    routes: tuple[Route, ...] = ()
    dstport: int | None = None
    mtu: int | None = None
    ttl: int | None = None
    learning: bool = False
    #: the IP version of the underlay (`underlay=ipv4|ipv6`); None: the pod's primary IP's
    underlay: int | None = None

    def underlay_ip(self, addresses: Sequence[str]) -> str | None:
        """Of the pod's addresses (primary first), the one this network's VXLAN packets use; None if it has
        none of the family `underlay` asks for."""
        for address in addresses:
            if self.underlay is None or ipaddress.ip_address(address).version == self.underlay:
                return address
        return None

    @property
    def effective_dstport(self) -> int:
        """The UDP port the kernel will use: unset and 0 both mean the kernel default."""
        return self.dstport or KERNEL_DEFAULT_DSTPORT

    def describe(self) -> str:
        """The seed's `inspect` "net:" body: `key:value` items sorted by key, set options only.

        `dev:eth0 id:101 ip:192.168.11.2/29 name:vxeth1 route:192.168.12.0/29:192.168.11.1
        type:vxlan up:true`; several routes give several `route:` items, in the order given.
        """
        items: list[tuple[str, str]] = [
            ("dev", self.dev),
            ("id", str(self.vni)),
            ("name", self.name),
            ("type", self.type),
        ]
        if self.dstport is not None:
            items.append(("dstport", str(self.dstport)))
        if self.ip is not None:
            items.append(("ip", str(self.ip)))
        if self.learning:
            items.append(("learning", "true"))
        if self.mtu is not None:
            items.append(("mtu", str(self.mtu)))
        if self.ttl is not None:
            items.append(("ttl", str(self.ttl)))
        if self.underlay is not None:
            items.append(("underlay", f"ipv{self.underlay}"))
        if self.up:
            items.append(("up", "true"))
        items.extend(("route", str(route)) for route in self.routes)
        # A stable sort keeps the routes in their given order.
        items.sort(key=lambda item: item[0])
        return " ".join(f"{key}:{value}" for key, value in items)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome for one pod: its valid networks (annotation order) and every problem found."""

    networks: tuple[NetworkSpec, ...] = ()
    errors: tuple[str, ...] = ()


def is_ifname(value: object) -> bool:
    """True for a name we accept for an interface (and so for a network): ≤ 15 of [A-Za-z0-9_.-]."""
    return (
        isinstance(value, str)
        and _IFNAME.fullmatch(value) is not None
        and value not in (".", "..")
    )


# --------------------------------------------------------------------------------------------------
# Parsing: text → raw options (strings and booleans, not yet validated)


def _show(value: object) -> str:
    """A bad value as it appears in a message: truncated, quoted, control characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + "…"
    return repr(text)


def _parse_options(words: Iterable[str], *, bare_number_is_id: bool) -> dict[str, object]:
    """`key=value` / `key` words → raw options. Repeated `route` accumulate; other keys: last wins."""
    options: dict[str, object] = {}
    routes: list[object] = []
    for word in words:
        if not word:
            continue
        key, eq, value = word.partition("=")
        raw: object
        if not eq:
            if bare_number_is_id and _DIGITS.fullmatch(word):
                key, raw = "id", word
            else:
                raw = True
        elif value == "true":
            raw = True
        elif value == "false":
            raw = False
        else:
            raw = value
        if key == "route":
            routes.append(raw)
        else:
            options[key] = raw
    if routes:
        options["route"] = tuple(routes)
    return options


def _problem(message: str) -> dict[str, object]:
    return {_PROBLEM: message}


def _parse_configmap_entry(text: object) -> dict[str, object]:
    if not isinstance(text, str):
        return _problem(f"ConfigMap value is not text: {_show(text)}")
    if len(text) > MAX_NETWORK_CHARS:
        return _problem(
            f"ConfigMap entry is {len(text)} characters long (limit {MAX_NETWORK_CHARS}): "
            f"{_show(text)}"
        )
    return _parse_options(_OPTION_SEP.split(text), bare_number_is_id=True)


def parse_configmap(data: Mapping[str, str]) -> dict[str, Mapping[str, object]]:
    """The network ConfigMap's data → raw (not yet validated) options per network.

    Never raises; problems are kept in the raw options and reported by `resolve` for the pods that
    use the network (a ConfigMap entry nobody uses bothers nobody).
    """
    parsed: dict[str, Mapping[str, object]] = {}
    for network, text in (data or {}).items():
        parsed[str(network)] = MappingProxyType(_parse_configmap_entry(text))
    return parsed


@dataclass(slots=True)
class _Chunk:
    """One network's text in an annotation: its first word and all its option words."""

    name: str
    words: list[str]
    chars: int


def _chunks(annotation: str) -> Iterator[_Chunk]:
    """Split an annotation into networks. Linear: every character is looked at a bounded number of
    times; words of an oversized network are not kept (only its size is counted)."""
    current: _Chunk | None = None
    for line in annotation.split("\n"):
        for index, token in enumerate(line.split(",")):
            if not token.strip(_WHITESPACE):
                continue
            # Only a line's first token can continue a network: whitespace after a comma does not
            # ("a, b" is two networks, as in the original). No regex here: a backtracking pattern
            # over a megabyte of spaces is quadratic.
            continuation = index == 0 and token[0] in " \t"
            if continuation and current is not None:
                current.chars += len(token)
                if current.chars <= MAX_NETWORK_CHARS:
                    current.words.extend(w for w in _OPTION_SEP.split(token) if w)
                continue
            if current is not None:
                yield current
            # A continuation with nothing to continue is read as a network of its own.
            # Only the name is read from an oversized network (for the message), not its words.
            first = _WORD.search(token)
            if first is None:  # cannot happen: blank tokens were skipped above
                continue
            words = _OPTION_SEP.split(token[first.end() :]) if len(token) <= MAX_NETWORK_CHARS else []
            current = _Chunk(first.group(), [w for w in words if w], len(token))
    if current is not None:
        yield current


def network_names(annotation: str | None) -> tuple[str, ...]:
    """The network names a pod asks for, in order, without duplicates; invalid names left out.

    Cheap (no option validation): used to route pod events to networks. A superset of the networks
    `resolve` returns for the same annotation.
    """
    if not annotation or not isinstance(annotation, str):
        return ()
    names: dict[str, None] = {}
    for count, chunk in enumerate(_chunks(annotation)):
        if count >= MAX_NETWORKS:  # the networks `resolve` looks at, no more
            break
        if is_ifname(chunk.name):
            names.setdefault(chunk.name, None)
    return tuple(names)


# --------------------------------------------------------------------------------------------------
# Validation: raw options → NetworkSpec or a message


class _Invalid(Exception):
    """A problem with one network: skipped, the message reported. Never leaves this module."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        #: the option at fault, to tell the pod author whether they or the ConfigMap wrote it.
        self.key = key


def _int_option(key: str, raw: object) -> int:
    low, high = _INT_RANGES[key]
    if isinstance(raw, str) and _DIGITS.fullmatch(raw):
        value = int(raw)
        if low <= value <= high:
            return value
    raise _Invalid(f"bad {key} {_show(raw)}: expected an integer {low}–{high}", key)


def _bool_option(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    raise _Invalid(f"bad {key} {_show(raw)}: expected {key}, {key}=true or {key}=false", key)


def _text_option(key: str, raw: object) -> str:
    if isinstance(raw, str) and raw:
        return raw
    raise _Invalid(f"bad {key} {_show(raw)}: a value is required ({key}=…)", key)


def _ifname_option(key: str, raw: object) -> str:
    value = _text_option(key, raw)
    if not is_ifname(value):
        raise _Invalid(
            f"bad {key} {_show(value)}: an interface name is 1–15 characters of A-Z a-z 0-9 _ . -",
            key,
        )
    return value


def _ip_option(raw: object) -> IPInterface:
    value = _text_option("ip", raw)
    # ipaddress accepts IPv6 scope ids ("fe80::1%anything"): nothing we want to pass on.
    if "%" not in value:
        try:
            return ipaddress.ip_interface(value)
        except ValueError:
            pass
    raise _Invalid(f"bad ip {_show(value)}: expected an IPv4 or IPv6 address/prefix, e.g. 192.168.1.2/24", "ip")


def _route_option(raw: object) -> Route:
    value = _text_option("route", raw)
    slash = value.find("/")
    colon = value.find(":", slash) if slash >= 0 else -1
    if colon < 0 or "%" in value:
        raise _Invalid(
            f"bad route {_show(value)}: expected SUBNET/LEN:GATEWAY, e.g. 192.168.2.0/24:192.168.1.1",
            "route",
        )
    try:
        dst = ipaddress.ip_network(value[:colon], strict=False)
    except ValueError:
        raise _Invalid(f"bad route {_show(value)}: {_show(value[:colon])} is not a subnet", "route") from None
    if dst.network_address != ipaddress.ip_interface(value[:colon]).ip:
        raise _Invalid(f"bad route {_show(value)}: host bits set, the subnet is {dst}", "route")
    try:
        via = ipaddress.ip_address(value[colon + 1 :])
    except ValueError:
        raise _Invalid(
            f"bad route {_show(value)}: gateway {_show(value[colon + 1 :])} is not an IP address", "route"
        ) from None
    if dst.version != via.version:
        raise _Invalid(
            f"bad route {_show(value)}: IPv{dst.version} subnet via an IPv{via.version} gateway", "route"
        )
    return Route(dst, via)


def _spec(network: str, options: Mapping[str, object]) -> NetworkSpec:
    """Merged raw options → NetworkSpec; raises _Invalid naming the first problem."""
    unknown = sorted(key for key in options if key not in KNOWN_KEYS)
    if unknown:
        raise _Invalid(f"unknown option {_show(unknown[0])}", unknown[0])
    if "id" not in options:
        raise _Invalid("no id (VNI): set id= in the annotation or the network ConfigMap", "id")
    kind = _text_option("type", options.get("type", DEFAULT_TYPE))
    if kind != DEFAULT_TYPE:
        raise _Invalid(f"bad type {_show(kind)}: only vxlan is supported", "type")
    name = _ifname_option("name", options.get("name", network))
    dev = _ifname_option("dev", options.get("dev", DEFAULT_DEV))
    if name == dev or name == "lo":
        # Setup replaces a link of this name: it must never be the pod's underlay or loopback.
        raise _Invalid(f"bad name {_show(name)}: the interface would replace the pod's {name}", "name")
    ints = {key: _int_option(key, options[key]) for key in _INT_RANGES if key in options}
    underlay = options.get("underlay")
    if underlay is not None and underlay not in UNDERLAYS:
        raise _Invalid(f"bad underlay {_show(underlay)}: ipv4 or ipv6", "underlay")
    raw_routes = options.get("route", ())
    if not isinstance(raw_routes, tuple):
        raw_routes = (raw_routes,)
    routes: dict[IPNetwork, Route] = {}
    for raw in raw_routes:
        route = _route_option(raw)
        known = routes.setdefault(route.dst, route)
        if known != route:
            raise _Invalid(f"conflicting routes to {route.dst}: via {known.via} and via {route.via}", "route")
    return NetworkSpec(
        network=network,
        vni=ints["id"],
        name=name,
        dev=dev,
        type=kind,
        up=_bool_option("up", options.get("up", False)),
        ip=_ip_option(options["ip"]) if "ip" in options else None,
        routes=tuple(routes.values()),
        dstport=ints.get("dstport"),
        mtu=ints.get("mtu"),
        ttl=ints.get("ttl"),
        learning=_bool_option("learning", options.get("learning", False)),
        underlay=UNDERLAYS[underlay] if underlay is not None else None,
    )


def entry_problem(network: str, text: object) -> str | None:
    """What is wrong with one ConfigMap entry on its own (its options, as any pod naming the network would
    get them; a missing `id` is no problem here, pods may give it), or None when nothing is."""
    base = _parse_configmap_entry(text)
    if _PROBLEM in base:
        return str(base[_PROBLEM])
    try:
        _spec(network if is_ifname(network) else "x", {"id": "0", **base})
    except _Invalid as exc:
        return str(exc)
    return None


def _merge(base: Mapping[str, object], overlay: Mapping[str, object]) -> dict[str, object]:
    """Pod options override ConfigMap options key by key; the annotation's routes replace the
    ConfigMap's (a pod that names routes names all of its routes)."""
    merged = dict(base)
    merged.update(overlay)
    return merged


def resolve(
    annotation: str | None, configmap: Mapping[str, str], *, pod_key: str
) -> Resolution:
    """The networks a pod asks for, merged with the ConfigMap and validated.

    Never raises. Each error message names the pod (`pod_key`, "namespace/name"), the network and
    the bad value. A bad network is skipped, the others are returned in annotation order. Also
    rejected: duplicate network names (the later one), two networks resolving to one interface name
    (the later one), networks beyond `MAX_NETWORKS`, networks whose text exceeds `MAX_NETWORK_CHARS`.
    """
    if not annotation or not isinstance(annotation, str):
        return Resolution()
    configmap = configmap if isinstance(configmap, Mapping) else {}
    networks: list[NetworkSpec] = []
    errors: list[str] = []
    seen_networks: set[str] = set()
    interfaces: dict[str, str] = {}  # interface name → network that got it
    dropped: list[str] = []
    count = 0

    def error(network: str, message: str) -> None:
        errors.append(f"pod {pod_key}: network {_show(network)}: {message}")

    for chunk in _chunks(annotation):
        count += 1
        if count > MAX_NETWORKS:
            # Name a few, then stop reading: the rest cannot change the outcome.
            dropped.append(_show(chunk.name))
            if len(dropped) == 3:
                break
            continue
        network = chunk.name
        if not is_ifname(network):
            error(network, "bad network name: 1–15 characters of A-Z a-z 0-9 _ . - (the default interface name)")
            continue
        if network in seen_networks:
            error(network, "listed more than once: the later one is ignored")
            continue
        seen_networks.add(network)
        if chunk.chars > MAX_NETWORK_CHARS:
            error(network, f"options are {chunk.chars} characters long (limit {MAX_NETWORK_CHARS})")
            continue
        pod_options = _parse_options(chunk.words, bare_number_is_id=False)
        base = _parse_configmap_entry(configmap[network]) if network in configmap else {}
        try:
            if _PROBLEM in base:
                raise _Invalid(str(base[_PROBLEM]))
            spec = _spec(network, _merge(base, pod_options))
        except _Invalid as exc:
            where = " (from the network ConfigMap)" if exc.key in base and exc.key not in pod_options else ""
            error(network, f"{exc}{where}")
            continue
        except Exception as exc:  # noqa: BLE001 — the contract is "never raises"; say so loudly.
            error(network, f"internal error validating options: {type(exc).__name__}: {_show(str(exc))}")
            continue
        holder = interfaces.setdefault(spec.name, network)
        if holder != network:
            error(network, f"interface name {_show(spec.name)} is already used by network {_show(holder)}")
            continue
        networks.append(spec)
    if dropped:
        errors.append(
            f"pod {pod_key}: more than {MAX_NETWORKS} networks (the limit): "
            f"ignored {', '.join(dropped)} and any after them"
        )
    return Resolution(tuple(networks), tuple(errors))


def with_underlays(resolution: Resolution, addresses: Sequence[str], *, pod_key: str) -> Resolution:
    """`resolution` without the networks the pod has no underlay address for (see `NetworkSpec.underlay_ip`),
    one error each. A pod whose addresses are not known yet (empty) keeps them all: it is no member yet."""
    if not addresses:
        return resolution
    kept = tuple(spec for spec in resolution.networks if spec.underlay_ip(addresses) is not None)
    errors = tuple(
        f"pod {pod_key}: network {_show(spec.network)}: underlay=ipv{spec.underlay} but the pod has no IPv"
        f"{spec.underlay} address (podIPs {' '.join(addresses)}): not a member"
        for spec in resolution.networks if spec not in kept)
    return Resolution(kept, resolution.errors + errors)
