"""What the controller executes in the pods' agent containers, and how it reads the answers.

Pure code: argv lists and batch texts in, parsed kernel state out; running them (pod exec, deadlines,
retries) is the caller's business. Every word that reaches an argv or a batch line is either a
constant here or a value validated by `options.py` / re-validated here (interface names, IPs via
`ipaddress`), so nothing a pod author wrote reaches a command unchecked.

Protocol (iproute2 ≥ 4.14 for `-j`). A pod nobody set up takes one exec for setup and release:
`setup_release_argv(t, file, fresh=True)` with `setup_batch(specs, {})` on stdin runs the batch without
`-force`, so it stops at its first failed line, and releases the init agent only when it succeeded. The
batch begins with the `link add` of every wanted link, and an add fails when the name is taken: when a
link exists already (a setup may have happened before: an earlier controller, a failed attempt; or
something else holds the name) the exec stops there, exits `LINKS_EXIST`, and setup goes the long way,
reading first. The check costs no process of its own (an `ip link show` per name would cost a process
start per network and pod), and what it changed is at most the links added before the taken name, which
the long way then reads and keeps:

1. Read the links: `LINKS_ARGV`, parsed by `parse_links`. We read `ip -d -j addr show` rather than
   `ip -d -j link show`: with `-d` it carries the same `linkinfo` *and* each link's `addr_info`, so
   one exec tells both what to keep and which stale addresses to drop.
2. Set up (init agent): `batch_argv("ip", t)` with `setup_batch(specs, links)` on stdin, the text of
   `plan_links`: a missing link is added, a link that differs where the kernel cannot change it in
   place (VNI, dev, port, …: `differences`) is deleted and re-created, the rest (MTU, addresses,
   up/down, routes, the alias) is set in place. Order: all deletes, all adds, MTU and alias and
   addresses, up, routes — a route via a gateway needs the address on a link that is up. A non-vxlan link holding a wanted name is never touched: `setup_conflicts` says
   so, and that network is left out of the batch.
   The batch and the release go in one exec (`setup_release_argv(t, file)`), the release only after
   the batch succeeded.
3. Release the init agent (alone when there is nothing to set up): `release_argv(file)` = `sh -c 'touch FILE; kill -TERM 1'` —
   agent images that wait for TERM exit on the signal, older ones that wait for the file (the
   controller's `--terminate-file`, default /run/terminate) exit when it appears. Exit 137 counts as
   released too (`RELEASED_CODES`): the agent, PID 1 of the container, exited on TERM and the kernel
   killed the rest of its PID namespace, the exec'd shell included.
4. Converge (sidecar agent): read links, routes and fdb in one exec (`STATE_ARGV`, parsed by
   `parse_state`) when they are not known, then run what differs in one exec: `batch_argv("bridge", t)`
   with the `fdb_diff` batch on stdin, or, when links change too, `converge_argv(t, plan_links(…).batch)`
   with the fdb batch on stdin. `fdb_lines` renders the fdb read for `inspect`. (`FDB_ARGV` and
   `fdb_batch` are the fdb alone, as the bench's oracle and the tests use them.)

Setup is idempotent *given a fresh read*: read the links, then run the batch computed from them.
Re-sending an old batch text is not (a `link add` of a link that now exists fails, and iproute2 has
no create-or-keep for vxlan: `ip link replace` of an existing vxlan link is "Operation not
supported"). The fdb batch, in contrast, stays harmless when re-sent on a stale reading.

Batches run with `-force` (but a pod's first setup, above): one failed line does not stop the others,
and the exit status is still non-zero, so the caller retries against freshly read state. Batch commands
are wrapped in `timeout N` because a kubelet does not kill a non-tty exec whose client went away: without
it an abandoned exec (for instance `-batch -` waiting for an EOF that never comes) would stay in the pod
for ever.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

from kube_vxlan_controller.options import KERNEL_DEFAULT_DSTPORT, NetworkSpec, Route, is_ifname

__all__ = [
    "AgentOutputError",
    "FDB_ARGV",
    "FdbDiff",
    "LINKS_ARGV",
    "Link",
    "RELEASED_CODES",
    "TERMINATE_ARGV",
    "release_argv",
    "setup_release_argv",
    "setup_exec",
    "in_pod_timeout",
    "LINKS_EXIST",
    "ZERO_MAC",
    "batch_argv",
    "fdb_batch",
    "fdb_diff",
    "fdb_lines",
    "parse_fdb",
    "parse_links",
    "setup_batch",
    "setup_conflicts",
    "with_timeout",
]

LINKS_ARGV: list[str] = ["ip", "-d", "-j", "addr", "show"]
FDB_ARGV: list[str] = ["bridge", "-j", "fdb", "show"]
#: The init agent's main process waits for TERM; after it the pod's next init container starts.
TERMINATE_ARGV: list[str] = ["kill", "-TERM", "1"]
#: exit codes of the release exec that mean "released" (see the module docstring, step 3).
RELEASED_CODES = frozenset({0, 137})
#: exit code of `setup_release_argv(…, fresh=True)` when its batch stopped at a failed line (a wanted link
#: exists already, or another failure): at most the links added before that line were changed.
LINKS_EXIST = 75
#: what a terminate file path may be: it goes into a `sh -c` word, so nothing a shell would interpret.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,255}")
#: The all-zeros entry: "flood unknown destinations to this peer", one per peer.
ZERO_MAC = "00:00:00:00:00:00"

_BATCH_TOOLS = ("ip", "bridge")
#: what a line of a `plan_links` batch is made of (it may go into a `sh -c` word: nothing a shell reads)
_BATCH_LINE = re.compile(r"[A-Za-z0-9_.:/ -]+")


class AgentOutputError(ValueError):
    """An agent command printed something we cannot read as iproute2 JSON."""


# --------------------------------------------------------------------------------------------------
# argv


def with_timeout(argv: Sequence[str], timeout: int) -> list[str]:
    """`argv` run under `timeout N`, so it cannot outlive an exec its client abandoned."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout must be a positive whole number of seconds, not {timeout!r}")
    return ["timeout", str(timeout), *argv]


def release_argv(terminate_file: str = "/run/terminate") -> list[str]:
    """The one exec that releases the init agent: `kill -TERM 1`, after touching `terminate_file` when
    one is given (older agent images wait for the file; a failing touch does not stop the kill)."""
    if not terminate_file:
        return list(TERMINATE_ARGV)
    return ["sh", "-c", _release_script(terminate_file)]


def _release_script(terminate_file: str) -> str:
    if not terminate_file:
        return " ".join(TERMINATE_ARGV)
    if not _SAFE_PATH.fullmatch(terminate_file):
        raise ValueError(f"terminate file must be an absolute path of [A-Za-z0-9_./-], not {terminate_file!r}")
    return f"touch {terminate_file} 2>/dev/null; {' '.join(TERMINATE_ARGV)}"


def setup_release_argv(timeout: int, terminate_file: str = "/run/terminate", *, fresh: bool = False) -> list[str]:
    """One exec that sets up and releases: `timeout N ip -force -batch -` (the setup batch on stdin),
    then, only when the batch succeeded (else its exit code), the release of `release_argv`.

    `fresh`: the batch was computed for a pod without links (`setup_batch(specs, {})`, which begins with
    the `link add` of each): it runs without `-force`, so the add of a name that is taken fails and stops
    it, and the exec exits `LINKS_EXIST`, having changed at most the links added before that line (see the
    module docstring)."""
    tool = with_timeout(["ip", "-batch", "-"], timeout) if fresh else batch_argv("ip", timeout)
    stopped = f"exit {LINKS_EXIST}" if fresh else "exit"
    return ["sh", "-c", f"{' '.join(tool)} || {stopped}; {_release_script(terminate_file)}"]


def in_pod_timeout(exec_deadline: float) -> int:
    """`timeout N` inside the pod: a little over the exec deadline, so an abandoned exec ends itself."""
    return int(exec_deadline) + 1


def setup_exec(specs: Sequence[NetworkSpec], links: Mapping[str, "Link"] | None, *, timeout: int,
               terminate_file: str = "/run/terminate", pod_ips: Sequence[str] = ()) -> tuple[list[str], str | None]:
    """The argv and stdin of the exec that sets the pod's interfaces up and releases its init agent.

    `links` None: a pod nobody set up — the batch assumes none of the links exists, and stops at the add
    of one that does (the exec exits `LINKS_EXIST`); else the links as read from the pod (`parse_links`).
    Nothing to set up (no specs, or every link as wanted): the release alone, no stdin."""
    batch = setup_batch(specs, links or {}, pod_ips=pod_ips)
    if not batch:
        return release_argv(terminate_file), None
    return setup_release_argv(timeout, terminate_file, fresh=links is None), batch


def converge_argv(timeout: int, link_batch: str) -> list[str]:
    """One exec that changes links and fdb together (a replaced link loses its fdb entries with it, so
    they go back in the same exec: the gap is the time between two commands): `ip -force -batch -` reading
    `link_batch` from a here-document, then `bridge -force -batch -` reading the exec's stdin (the fdb
    batch, which can be long: it is never an argument). One `timeout N` bounds both (coreutils' signals
    the whole process group): the exec ends by the same deadline as any other. Exit status: ip's when it
    failed, else bridge's.

    `link_batch` must come from `plan_links` (validated words only); it goes into the `sh -c` word."""
    lines = link_batch.splitlines()
    if not lines or any(not _BATCH_LINE.fullmatch(line) for line in lines):
        raise ValueError(f"not a plan_links batch: {link_batch[:80]!r}")
    script = (f"ip -force -batch - <<'KVC'\n{link_batch}KVC\nr=$?; bridge -force -batch -; b=$?; "
              "[ $r -ne 0 ] && exit $r; exit $b")
    return with_timeout(["sh", "-c", script], timeout)


def batch_argv(tool: str, timeout: int) -> list[str]:
    """`timeout N ip|bridge -force -batch -`: runs the batch text given on stdin."""
    if tool not in _BATCH_TOOLS:
        raise ValueError(f"batch tool must be one of {_BATCH_TOOLS}, not {tool!r}")
    return with_timeout([tool, "-force", "-batch", "-"], timeout)


# --------------------------------------------------------------------------------------------------
# Links


@dataclass(frozen=True, slots=True)
class Link:
    """One link in a pod as the kernel reports it. Missing facts are None (or empty)."""

    name: str
    kind: str | None = None
    vni: int | None = None
    #: the underlay device (vxlan `dev`)
    dev: str | None = None
    #: the UDP destination port (vxlan `dstport`; the kernel reports 8472 for `dstport 0`)
    port: int | None = None
    learning: bool | None = None
    ttl: int | None = None
    mtu: int | None = None
    up: bool = False
    #: IPv6 underlay source (vxlan `local`), which is what makes a vxlan link IPv6
    local: str | None = None
    #: global-scope addresses as "ip/prefixlen" (link-local ones are the kernel's, not ours)
    addresses: tuple[str, ...] = ()
    #: the link's alias (IFLA_IFALIAS): `kvc:NETWORK` on links this controller made (`alias_of`)
    alias: str | None = None
    #: routes via a gateway on this link, as read (`STATE_ARGV`); None: not read (`LINKS_ARGV`)
    routes: tuple[Route, ...] | None = None


def _json_list(stdout: str, what: str) -> list:
    if not isinstance(stdout, str) or not stdout.strip():
        raise AgentOutputError(f"{what}: empty output, expected a JSON list")
    try:
        data = json.loads(stdout)
    except ValueError as exc:
        raise AgentOutputError(f"{what}: not JSON ({exc}): {stdout[:80]!r}") from None
    if not isinstance(data, list):
        raise AgentOutputError(f"{what}: expected a JSON list, got {type(data).__name__}")
    return data


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _addresses(addr_info: object) -> tuple[str, ...]:
    found: list[str] = []
    for addr in addr_info if isinstance(addr_info, list) else ():
        if not isinstance(addr, dict) or addr.get("scope") not in (None, "global"):
            continue
        try:
            found.append(str(ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}")))
        except (KeyError, ValueError):
            continue  # an address we cannot read is not one we set
    return tuple(found)


def parse_links(stdout: str) -> dict[str, Link]:
    """`LINKS_ARGV` output (`ip -d -j addr show`; `ip -d -j link show` works too) → links by name.

    Tolerates missing or oddly typed keys (the fact becomes None); raises `AgentOutputError` when
    the output is not a JSON list of objects each with an `ifname`.
    """
    links: dict[str, Link] = {}
    for i, item in enumerate(_json_list(stdout, "ip -j link/addr show")):
        if not isinstance(item, dict) or not isinstance(item.get("ifname"), str):
            raise AgentOutputError(f"ip -j link/addr show: entry {i} is not a link object: {str(item)[:80]!r}")
        info = item.get("linkinfo") if isinstance(item.get("linkinfo"), dict) else {}
        data = info.get("info_data") if isinstance(info.get("info_data"), dict) else {}
        flags = item.get("flags") if isinstance(item.get("flags"), list) else []
        learning = data.get("learning")
        links[item["ifname"]] = Link(
            name=item["ifname"],
            kind=_str(info.get("info_kind")),
            vni=_int(data.get("id")),
            dev=_str(data.get("link")),
            port=_int(data.get("port")),
            learning=learning if isinstance(learning, bool) else None,
            ttl=_int(data.get("ttl")),
            mtu=_int(item.get("mtu")),
            up="UP" in flags,
            local=_str(data.get("local6")),
            addresses=_addresses(item.get("addr_info")),
            alias=_str(item.get("ifalias")),
        )
    return links


#: Between the sections of `STATE_ARGV`'s output.
_MARK = "--kvc--"
#: One read of everything the sidecar reconciles: links with addresses, the routes of both families, the
#: fdb. Each `ip -j`/`bridge -j` prints one JSON list; `echo` puts each section on lines of its own.
_STATE_READS = ("ip -d -j addr show", "ip -4 -j route show", "ip -6 -j route show", "bridge -j fdb show")


def state_script(timeout: int | None = None) -> str:
    """The shell text of the state read, each command under `timeout N` when given."""
    prefix = "" if timeout is None else " ".join(with_timeout([], timeout)) + " "
    return f"; echo; echo {_MARK}; ".join(prefix + read for read in _STATE_READS)


STATE_ARGV: list[str] = ["sh", "-c", state_script()]


@dataclass(frozen=True, slots=True)
class State:
    """What a pod's kernel holds of what the controller keeps: its links (with routes) and all-zeros fdb."""

    links: Mapping[str, Link]
    fdb: Mapping[str, frozenset[str]]
    #: the `bridge -j fdb show` text, for `fdb_lines` ("" when the state was not read but written)
    fdb_text: str = ""


def _routes(stdout: str, default: str) -> dict[str, list[Route]]:
    """`ip -j route show` (one family) → device → its routes via a gateway (the kernel's own are not ours)."""
    routes: dict[str, list[Route]] = {}
    for item in _json_list(stdout, "ip -j route show") if stdout.strip() else ():
        if not isinstance(item, dict) or not isinstance(item.get("dev"), str) or "gateway" not in item:
            continue
        dst = item.get("dst")
        try:
            route = Route(ipaddress.ip_network(default if dst == "default" else dst), _ip(str(item["gateway"])))
        except (TypeError, ValueError):
            continue  # a route we cannot read is not one we set
        routes.setdefault(item["dev"], []).append(route)
    return routes


def parse_state(stdout: str) -> State:
    """`STATE_ARGV` output → `State`. An empty route section (no IPv6 in the pod) is no routes; anything
    else unreadable raises `AgentOutputError`."""
    sections = stdout.split(f"\n{_MARK}\n") if isinstance(stdout, str) else []
    if len(sections) != 4:
        raise AgentOutputError(f"state read: expected 4 sections, got {len(sections)}: {str(stdout)[:80]!r}")
    addrs, v4, v6, fdb = sections
    routes = _routes(v4, "0.0.0.0/0")
    for dev, more in _routes(v6, "::/0").items():
        routes.setdefault(dev, []).extend(more)
    links = {name: replace(link, routes=tuple(routes.get(name, ()))) for name, link in parse_links(addrs).items()}
    return State(links, parse_fdb(fdb), fdb)


def _ipv6_underlay(underlay: str | None) -> str | None:
    """The pod's own IPv6 address when the underlay is IPv6, else None (IPv4: no `local`, as the
    original did). A vxlan link only accepts IPv6 peers when it is an IPv6 link."""
    if underlay is None:
        return None
    address = ipaddress.ip_address(underlay)
    return str(address) if address.version == 6 else None


#: The alias of the links this controller makes: `kvc:NETWORK` (network names are interface names, so
#: the alias is one word of safe characters). It tells which links are ours after a restart, so an
#: interface whose network the annotation no longer names is removed.
ALIAS_PREFIX = "kvc:"


def alias_of(network: str) -> str:
    return ALIAS_PREFIX + network


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a link differs from its network's spec: `what` is an option name as the annotation spells
    it (`id`, `dstport`, `mtu`, …), the values as `inspect` shows them ("none" for absent)."""

    what: str
    actual: str
    desired: str
    #: the link must be replaced (the kernel cannot change this in place)
    replace: bool

    def __str__(self) -> str:
        return f"{self.what} {self.actual} → {self.desired}"


def _show(value: object) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def differences(spec: NetworkSpec, link: Link, pod_ips: Sequence[str] = ()) -> tuple[Difference, ...]:
    """How `link` differs from what `spec` asks for, in option order; () when it is as asked.

    Compared in place: `mtu` (when the spec sets one), `ip` (the global addresses), `up` and `route` (when
    the link's routes were read). Replacing the link: `type`, `id`, `dev`, `dstport`, `learning`, `ttl` and
    the IPv6 `local` address (`pod_ips`: the pod's IPs, primary first; the spec's underlay is one of them)."""
    local = _ipv6_underlay(spec.underlay_ip(pod_ips))
    wanted_ip = (str(spec.ip),) if spec.ip is not None else ()
    pairs: list[tuple[str, object, object, bool]] = [
        ("type", link.kind, spec.type, True),
        ("id", link.vni, spec.vni, True),
        ("dev", link.dev, spec.dev, True),
        ("dstport", link.port, spec.effective_dstport, True),
        ("learning", link.learning, spec.learning, True),
        # ttl unset: the kernel reports 0 ("use the route's default").
        ("ttl", link.ttl or 0, spec.ttl or 0, True),
        ("local", link.local, local, True),
        ("mtu", link.mtu, spec.mtu if spec.mtu is not None else link.mtu, False),
        ("ip", tuple(sorted(link.addresses)), wanted_ip, False),
        ("up", link.up, spec.up, False),
    ]
    if link.routes is not None:
        pairs.append(("route", tuple(sorted(map(str, link.routes))), tuple(sorted(map(str, spec.routes))), False))
    return tuple(Difference(what, _show(actual), _show(desired), replace)
                 for what, actual, desired, replace in pairs if actual != desired)


def actual_spec(spec: NetworkSpec, link: Link) -> NetworkSpec:
    """The spec that describes `link` as the kernel has it, for `describe()` (what `inspect` shows):
    options the spec leaves unset are shown when the kernel's value is not their default."""
    wanted = str(spec.ip) if spec.ip is not None else None
    ip = wanted if wanted in link.addresses else (link.addresses[0] if link.addresses else None)
    port = link.port if link.port is not None else spec.effective_dstport
    return NetworkSpec(
        network=spec.network, vni=link.vni if link.vni is not None else -1, name=link.name,
        dev=link.dev or "?", type=link.kind or "?", up=link.up,
        ip=ipaddress.ip_interface(ip) if ip is not None else None,
        routes=link.routes if link.routes is not None else spec.routes,
        dstport=port if spec.dstport is not None or port != KERNEL_DEFAULT_DSTPORT else None,
        mtu=link.mtu if spec.mtu is not None else None,
        ttl=link.ttl if spec.ttl is not None or link.ttl else None,
        learning=bool(link.learning))


def _check(spec: NetworkSpec) -> None:
    """Specs come from `options.resolve`; this guards against one built by hand with bad words."""
    ok = (
        is_ifname(spec.name)
        and is_ifname(spec.network)
        and is_ifname(spec.dev)
        and spec.type == "vxlan"
        and all(
            isinstance(value, int) and not isinstance(value, bool)
            for value in (spec.vni, spec.dstport or 0, spec.mtu or 0, spec.ttl or 0)
        )
        and (spec.ip is None or isinstance(spec.ip, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)))
        and all(
            isinstance(r.dst, (ipaddress.IPv4Network, ipaddress.IPv6Network))
            and isinstance(r.via, (ipaddress.IPv4Address, ipaddress.IPv6Address))
            for r in spec.routes
        )
    )
    if not ok:
        raise ValueError(f"not a validated NetworkSpec: {spec!r}")


def setup_conflicts(specs: Sequence[NetworkSpec], links: Mapping[str, Link]) -> tuple[str, ...]:
    """One message per wanted interface name held by a link that is not a vxlan link.

    Such a link is not ours (the pod's own interface, another CNI's): `plan_links` leaves it and
    its network alone rather than deleting it.
    """
    return tuple(
        f"network {spec.network!r}: interface {spec.name!r} exists and is a "
        f"{links[spec.name].kind or 'plain'} link, not vxlan: not touching it"
        for spec in specs
        if spec.name in links and links[spec.name].kind != "vxlan"
    )


def stale_links(links: Mapping[str, Link], specs: Sequence[NetworkSpec], named: Iterable[str]) -> tuple[str, ...]:
    """Links this controller made (`alias_of`) that no network of `specs` wants any more: their network is
    no longer `named` by the annotation, or its interface was renamed. A network still named but not in
    `specs` (its options do not resolve now) keeps its link: it is not torn down for a bad edit."""
    wanted = {spec.name for spec in specs}
    resolved = {spec.network for spec in specs}
    named = set(named)
    stale = []
    for name, link in sorted(links.items()):
        if link.kind != "vxlan" or not (link.alias or "").startswith(ALIAS_PREFIX) or name in wanted:
            continue
        network = link.alias[len(ALIAS_PREFIX):]
        if network not in named or network in resolved:
            stale.append(name)
    return tuple(stale)


def _link_add(spec: NetworkSpec, local: str | None) -> str:
    # `name` spelled out: a bare NAME that happens to be an ip keyword ("type", "mtu") would be read
    # as that keyword. Generic options (mtu) must come before `type`.
    words = ["link", "add", "name", spec.name]
    if spec.mtu is not None:
        words += ["mtu", str(spec.mtu)]
    # dstport 0 = the kernel default (8472), what the original sent; also silences iproute2's warning.
    words += ["type", "vxlan", "id", str(spec.vni), "dev", spec.dev, "dstport", str(spec.dstport or 0)]
    words.append("learning" if spec.learning else "nolearning")
    if spec.ttl is not None:
        words += ["ttl", str(spec.ttl)]
    if local is not None:
        words += ["local", local]
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """What `plan_links` decided: the `ip -force -batch -` text and what it does."""

    batch: str
    #: interfaces deleted and created anew (their fdb entries go with the old link)
    replaced: frozenset[str] = frozenset()
    #: interfaces deleted for good (`stale_links`)
    removed: tuple[str, ...] = ()
    #: interface → how it differed (links that existed and changed)
    changed: Mapping[str, tuple[Difference, ...]] = field(default_factory=dict)
    #: the links as they are once the batch ran (wanted interfaces only; conflicting names left out)
    after: Mapping[str, Link] = field(default_factory=dict)


def plan_links(specs: Sequence[NetworkSpec], links: Mapping[str, Link], *, pod_ips: Sequence[str] = (),
               remove: Sequence[str] = ()) -> LinkPlan:
    """The smallest `ip -force -batch -` text that makes the pod's links what `specs` describe.

    `links`: what the pod has (`parse_links`/`parse_state`; {} for a pod nobody set up); `pod_ips`: the
    pod's IPs, primary first (each network's underlay is one of them, `NetworkSpec.underlay_ip`; only an
    IPv6 one changes anything: the link is then created with `local <ip>`); `remove`:
    links to delete (`stale_links`). A missing link is created; a link that differs in what the kernel
    cannot change in place (`Difference.replace`) is deleted and created anew; otherwise the address, MTU,
    up/down, the alias and the routes (all of them when the link's routes were not read) are set in place.
    Order: all deletes, all adds, then per link MTU, alias, addresses, up, routes — a route via a gateway
    needs the address on a link that is up. A non-vxlan link holding a wanted name is never touched
    (`setup_conflicts`). Raises ValueError for a spec that did not come out of `options.resolve` valid.
    """
    for spec in specs:
        _check(spec)
    for name in remove:
        if not is_ifname(name):
            raise ValueError(f"not an interface name: {name!r}")
    deletes = [f"link del dev {name}" for name in remove]
    adds: list[str] = []
    settings: list[str] = []
    states: list[str] = []
    routes: list[str] = []
    replaced: set[str] = set()
    changed: dict[str, tuple[Difference, ...]] = {}
    after: dict[str, Link] = {}
    for spec in specs:
        old = links.get(spec.name)
        if old is not None and old.kind != "vxlan":
            continue  # not ours
        local = _ipv6_underlay(spec.underlay_ip(pod_ips))
        diffs = differences(spec, old, pod_ips) if old is not None else ()
        if diffs:
            changed[spec.name] = diffs
        fresh = old is None or any(d.replace for d in diffs)
        if fresh and old is not None:
            deletes.append(f"link del dev {spec.name}")
            replaced.add(spec.name)
        if fresh:
            adds.append(_link_add(spec, local))
        elif spec.mtu is not None and old.mtu != spec.mtu:
            settings.append(f"link set dev {spec.name} mtu {spec.mtu}")
        alias = alias_of(spec.network)
        if fresh or old.alias != alias:
            settings.append(f"link set dev {spec.name} alias {alias}")
        wanted = str(spec.ip) if spec.ip is not None else None
        if not fresh:
            settings += [f"addr del {a} dev {spec.name}" for a in old.addresses if a != wanted]
        if wanted is not None and (fresh or wanted not in old.addresses):
            settings.append(f"addr replace {wanted} dev {spec.name}")
        if spec.up and (fresh or not old.up):
            states.append(f"link set dev {spec.name} up")
        elif not spec.up and not fresh and old.up:
            states.append(f"link set dev {spec.name} down")
        have = () if fresh or old.routes is None else old.routes
        routes += [f"route del {r.dst} via {r.via} dev {spec.name}" for r in have if r not in spec.routes]
        routes += [f"route replace {r.dst} via {r.via} dev {spec.name}" for r in spec.routes
                   if fresh or old.routes is None or r not in old.routes]
        after[spec.name] = Link(
            name=spec.name, kind="vxlan", vni=spec.vni, dev=spec.dev, port=spec.effective_dstport,
            learning=spec.learning, ttl=spec.ttl or 0,
            mtu=spec.mtu if spec.mtu is not None else (None if fresh else old.mtu), up=spec.up, local=local,
            addresses=(wanted,) if wanted is not None else (), alias=alias,
            routes=spec.routes if fresh or old.routes is not None else None)
    lines = deletes + adds + settings + states + routes
    return LinkPlan("".join(line + "\n" for line in lines), frozenset(replaced), tuple(remove), changed, after)


def setup_batch(
    specs: Sequence[NetworkSpec], links: Mapping[str, Link], *, pod_ips: Sequence[str] = ()
) -> str:
    """The `ip -force -batch -` text of `plan_links` (setup in the init agent): "" when nothing differs."""
    return plan_links(specs, links, pod_ips=pod_ips).batch


# --------------------------------------------------------------------------------------------------
# Forwarding database


@dataclass(frozen=True, slots=True)
class FdbDiff:
    """What to change in a pod's fdb: (device, peer IP) pairs, each tuple in a stable order."""

    add: tuple[tuple[str, str], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()
    #: desired (device, value) pairs that are not a valid interface name / IP: never sent anywhere
    invalid: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.add and not self.delete

    def batch(self) -> str:
        """The `bridge -force -batch -` text of this difference (see `fdb_batch` for the order)."""
        lines = [f"fdb append {ZERO_MAC} dev {dev} dst {ip}" for dev, ip in self.add]
        lines += [f"fdb del {ZERO_MAC} dev {dev} dst {ip}" for dev, ip in self.delete]
        return "".join(line + "\n" for line in lines)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in value:
        raise ValueError(f"scoped address {value!r}")
    return ipaddress.ip_address(value)


@functools.lru_cache(maxsize=1 << 14)
def normal_ip(value: str) -> str:
    """`value` as the kernel prints it (`_ip`'s rules); ValueError (never cached) for anything else.

    Cached: every pass compares each member's whole peer list with its fdb, so under churn the same
    few thousand addresses are parsed hundreds of thousands of times a minute (`ipaddress` parses in
    Python: most of the controller's CPU in a churn profile before this cache). Thread-safe; at most
    16 384 addresses are kept, a few MB.
    """
    return str(_ip(value))


@functools.lru_cache(maxsize=1 << 14)
def ip_order(ip: str) -> tuple[int, int]:
    """The sort key of an address: version, then value (cached as `normal_ip`)."""
    address = ipaddress.ip_address(ip)
    return address.version, int(address)


def parse_fdb(stdout: str) -> dict[str, frozenset[str]]:
    """`bridge -j fdb show` output → device → peer IPs of its all-zeros entries (normalised).

    Learned and multicast entries (any other MAC) and entries without `dst` are ignored. Raises
    `AgentOutputError` on output that is not a JSON list of objects, or an unreadable `dst`.
    """
    fdb: dict[str, set[str]] = {}
    for i, entry in enumerate(_json_list(stdout, "bridge -j fdb show")):
        if not isinstance(entry, dict):
            raise AgentOutputError(f"bridge -j fdb show: entry {i} is not an object: {str(entry)[:80]!r}")
        dev, dst = entry.get("ifname"), entry.get("dst")
        if entry.get("mac") != ZERO_MAC or not isinstance(dev, str) or dst is None:
            continue
        try:
            fdb.setdefault(dev, set()).add(normal_ip(dst if isinstance(dst, str) else repr(dst)))
        except ValueError:
            raise AgentOutputError(f"bridge -j fdb show: entry {i} has an unreadable dst {str(dst)[:80]!r}") from None
    return {dev: frozenset(ips) for dev, ips in fdb.items()}


def fdb_lines(stdout: str) -> dict[str, list[str]]:
    """`bridge -j fdb show` output → device → its all-zeros entries as `bridge fdb show` prints
    them (`00:00:00:00:00:00 dst 10.0.0.2 self permanent`): the seed's `inspect` "fdb:" lines.

    Same filter and errors as `parse_fdb`, kernel order kept.
    """
    parse_fdb(stdout)  # the same validation, so both readings agree on what is garbage
    lines: dict[str, list[str]] = {}
    for entry in json.loads(stdout):
        dev, dst = entry.get("ifname"), entry.get("dst")
        if entry.get("mac") != ZERO_MAC or not isinstance(dev, str) or dst is None:
            continue
        flags = entry.get("flags") if isinstance(entry.get("flags"), list) else []
        words = [ZERO_MAC, "dst", normal_ip(dst), *(str(f) for f in flags)]
        if isinstance(entry.get("state"), str) and entry["state"]:
            words.append(entry["state"])
        lines.setdefault(dev, []).append(" ".join(words))
    return lines


def fdb_diff(desired: Mapping[str, Iterable[str]], observed: Mapping[str, Iterable[str]]) -> FdbDiff:
    """The difference between the peers a pod should have and the entries it has.

    Only devices in `desired` are managed: entries on other devices are left alone, and a desired
    device with no peers loses all its all-zeros entries. IPs are compared normalised. Ordered by
    device, then IP version and value.
    """
    add: list[tuple[str, str]] = []
    delete: list[tuple[str, str]] = []
    invalid: list[tuple[str, str]] = []
    for dev in sorted(desired):
        if not is_ifname(dev):
            invalid += [(str(dev), str(raw)) for raw in desired[dev]]
            continue
        want: set[str] = set()
        for raw in desired[dev]:
            try:
                want.add(normal_ip(raw))
            except (TypeError, ValueError):
                invalid.append((str(dev), str(raw)))
        have = set()
        for raw in observed.get(dev, ()):
            try:
                have.add(normal_ip(raw))
            except (TypeError, ValueError):
                continue  # cannot be named in a del line either; parse_fdb never yields one
        add += [(dev, ip) for ip in sorted(want - have, key=ip_order)]
        delete += [(dev, ip) for ip in sorted(have - want, key=ip_order)]
    return FdbDiff(tuple(add), tuple(delete), tuple(invalid))


def fdb_batch(desired: Mapping[str, Iterable[str]], observed: Mapping[str, Iterable[str]]) -> str:
    """The `bridge -force -batch -` text turning `observed` into `desired`; "" if nothing to do.

    Appends come before deletes: make-before-break (a peer that moves never leaves a window with no
    flood entry), and `fdb del` fails only when it would remove a device's last all-zeros entry
    that is already gone — after the appends, a device that keeps peers still has entries, so a
    stale delete (the entry vanished since we read it) cannot fail the batch.
    """
    return fdb_diff(desired, observed).batch()
