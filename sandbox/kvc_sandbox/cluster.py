"""The sandbox's nodes: one or more `NodeNetwork`s (node.py), joined by a routed underlay as a host-gw
CNI joins real nodes.

Layout with N > 1 nodes (nothing of it in the host's own namespace)::

    netns kvcsb-<pid>-<tag>-underlay   lo, ul0 (a bridge: the nodes' L2 segment), n1 n2 … (its ports)
    netns kvcsb-<pid>-<tag>-n<i>-node  the node (node.py) + ul0 (veth to port n<i>) with the node's
                                       InternalIP(s); forwarding on; per other node j and family,
                                       `route <pod CIDR of j> via <InternalIP of j> dev ul0`

A packet from a pod on node 1 to a pod on node 2 leaves the pod by its default route to br0 of node 1,
is routed by node 1 onto ul0 towards node 2's InternalIP, and routed again by node 2 onto its br0: two
hops, as with flannel's host-gw or Calico without encapsulation. One node alone has no underlay: its
InternalIP is its bridge's gateway address (the pods' hostIP).

Addresses. `ip_family` is `ipv4`, `ipv6` or `dual` (IPv4 primary, as a cluster whose first service and
pod CIDRs are IPv4). The cluster CIDR of each family (default 10.66.0.0/16, fd00:66::/48) is split into
one pod CIDR per node: IPv4 into the smallest power of two of equal blocks that fits the nodes (so one
node keeps the whole /16, as before nodes existed), IPv6 into /64s (kube-controller-manager's default
mask for IPv6). The underlay has 10.65.0.0/24 and fd00:65::/64; node i is .i / ::i. `mtu` is the
underlay's MTU, and so the pods' eth0 MTU. `check_cidrs` refuses CIDRs that overlap a route of the
host's own namespace (an operator's cluster CIDR that shadows a real network is a mistake, even though
the namespaces would not mind).

A node can be cut off (`cut`): the underlay's port of the node goes down, so the node's ul0 loses its
carrier and no packet crosses in either direction; `restore` brings it up. The node's pods keep running
(a partition, not a crash).

Concurrency contract: as `NodeNetwork`, synchronous and thread-safe (each node has its own lock; the
underlay is made in `start`, before any pod, and only `cut`/`restore` touch it afterwards, one `ip` call
each). Every call blocks for a few `ip` invocations.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import math
import os
import subprocess
from dataclasses import dataclass

from loguru import logger

from .node import PREFIX, NodeError, NodeNetwork, ProcessRegistry, run_ip, sysctl

IP_FAMILIES = ("ipv4", "ipv6", "dual")
DEFAULT_CIDRS = {4: "10.66.0.0/16", 6: "fd00:66::/48"}
UNDERLAY_CIDRS = {4: ipaddress.ip_network("10.65.0.0/24"), 6: ipaddress.ip_network("fd00:65::/64")}
UNDERLAY_BRIDGE = "ul0"
#: the node link onto the underlay (in the node namespace)
UNDERLAY_LINK = "ul0"
#: names of nodes: one alone keeps the sandbox's historic name
SINGLE_NODE = "sandbox-node"
MAX_NODES = 200
_tags = itertools.count(1)


class ClusterConfigError(ValueError):
    """Bad nodes, family, CIDR or MTU: the message is one line meant for the operator."""


def families(ip_family: str) -> tuple[int, ...]:
    """The IP versions of a family name, the primary first."""
    if ip_family not in IP_FAMILIES:
        raise ClusterConfigError(f"--ip-family must be one of {', '.join(IP_FAMILIES)}, not {ip_family!r}")
    return {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}[ip_family]


def node_names(nodes: int) -> list[str]:
    return [SINGLE_NODE] if nodes == 1 else [f"sandbox-node-{i}" for i in range(1, nodes + 1)]


def split_cidr(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network, nodes: int) -> list:
    """One pod CIDR per node out of the cluster CIDR (see the module docstring)."""
    if cidr.version == 6:
        new_prefix = 64 if nodes > 1 or cidr.prefixlen < 64 else cidr.prefixlen
    else:
        new_prefix = cidr.prefixlen + math.ceil(math.log2(nodes))
    if new_prefix > (30 if cidr.version == 4 else 126) or new_prefix < cidr.prefixlen:
        raise ClusterConfigError(f"pod CIDR {cidr} is too small for {nodes} nodes")
    return list(itertools.islice(cidr.subnets(new_prefix=new_prefix), nodes))


def host_routes() -> list[tuple[str, str]]:
    """(destination, device) of every route of the host's own namespace (main table), both families."""
    routes = []
    for family in ("-4", "-6"):
        out = subprocess.run(["ip", "-j", family, "route", "show"], capture_output=True, text=True)
        for route in json.loads(out.stdout or "[]") if out.returncode == 0 else []:
            dst = route.get("dst", "")
            if dst and dst != "default" and not dst.startswith(("fe80:", "ff00:")):
                routes.append((dst, route.get("dev", "?")))
    return routes


def check_cidrs(cidrs: list, routes: list[tuple[str, str]]) -> None:
    """ClusterConfigError when one of `cidrs` overlaps one of the host's `routes`."""
    for cidr in cidrs:
        for dst, dev in routes:
            try:
                other = ipaddress.ip_network(dst if "/" in dst else f"{dst}/{32 if ':' not in dst else 128}",
                                             strict=False)
            except ValueError:
                continue
            if other.version == cidr.version and cidr.overlaps(other):
                raise ClusterConfigError(f"pod CIDR {cidr} clashes with the host's route {dst} dev {dev}")


@dataclass(frozen=True)
class ClusterConfig:
    """What the nodes look like; `validate()` raises ClusterConfigError with one line."""

    nodes: int = 1
    ip_family: str = "ipv4"
    #: cluster CIDRs, one per family of `ip_family` in its order (default: DEFAULT_CIDRS)
    pod_cidrs: tuple[str, ...] = ()
    #: the underlay's MTU (and the pods' eth0); None: the kernel's 1500
    mtu: int | None = None

    def cidrs(self) -> list:
        """The cluster CIDRs, primary family first."""
        versions = families(self.ip_family)
        try:
            cidrs = [ipaddress.ip_network(c) for c in self.pod_cidrs] if self.pod_cidrs else \
                [ipaddress.ip_network(DEFAULT_CIDRS[v]) for v in versions]
        except ValueError as exc:
            raise ClusterConfigError(f"--pod-cidr: {exc}") from None
        if tuple(c.version for c in cidrs) != versions:
            raise ClusterConfigError(f"--pod-cidr: --ip-family {self.ip_family} needs "
                                     + " then ".join(f"an IPv{v}" for v in versions) + " CIDR")
        return cidrs

    def validate(self) -> list:
        """The cluster CIDRs, once everything checked (including the host's routes)."""
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or not 1 <= self.nodes <= MAX_NODES:
            raise ClusterConfigError(f"--nodes must be a whole number from 1 to {MAX_NODES}, not {self.nodes!r}")
        if self.mtu is not None and not 1280 <= self.mtu <= 9000:
            raise ClusterConfigError(f"--mtu must be from 1280 (IPv6's minimum) to 9000, not {self.mtu!r}")
        cidrs = self.cidrs()
        for cidr in cidrs:
            split_cidr(cidr, self.nodes)
            for underlay in UNDERLAY_CIDRS.values():
                if cidr.version == underlay.version and cidr.overlaps(underlay):
                    raise ClusterConfigError(f"pod CIDR {cidr} overlaps the sandbox's underlay {underlay}")
        check_cidrs(cidrs + [UNDERLAY_CIDRS[c.version] for c in cidrs] if self.nodes > 1 else cidrs, host_routes())
        return cidrs


@dataclass(frozen=True)
class Node:
    """One node as the API shows it."""

    name: str
    #: its pod CIDRs, primary first (`spec.podCIDRs`)
    pod_cidrs: tuple[str, ...]
    #: its InternalIPs, primary first
    addresses: tuple[str, ...]


class ClusterNetwork:
    """The nodes and their underlay: see the module docstring."""

    def __init__(self, config: ClusterConfig = ClusterConfig(), *, tag: str | None = None) -> None:
        cidrs = config.validate()
        self.config = config
        tag = tag if tag is not None else f"c{next(_tags)}"
        self.prefix = f"{PREFIX}-{os.getpid()}-{tag}"
        self.underlay_netns = f"{self.prefix}-underlay"
        self.processes = ProcessRegistry()
        per_family = [split_cidr(c, config.nodes) for c in cidrs]
        names = node_names(config.nodes)
        self.networks: dict[str, NodeNetwork] = {}
        self.nodes: dict[str, Node] = {}
        multi = config.nodes > 1
        for i, name in enumerate(names):
            node_cidrs = [str(f[i]) for f in per_family]
            network = NodeNetwork(tag=tag, node=f"n{i + 1}" if multi else "", cidr=node_cidrs,
                                  processes=self.processes, mtu=config.mtu)
            addresses = tuple(str(UNDERLAY_CIDRS[c.version][i + 1]) for c in cidrs) if multi \
                else tuple(map(str, network.gateways))
            self.networks[name] = network
            self.nodes[name] = Node(name, tuple(node_cidrs), addresses)
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Every node, then the underlay and the routes. NodeError (after cleaning up) on failure."""
        self._started = True
        try:
            for network in self.networks.values():
                network.start()
            if len(self.nodes) > 1:
                self._join()
        except Exception:
            self.stop()
            raise

    def _join(self) -> None:
        mtu = ("mtu", str(self.config.mtu)) if self.config.mtu else ()
        run_ip("netns", "add", self.underlay_netns)
        run_ip("-n", self.underlay_netns, "-batch", "-", stdin=(
            "link set lo up\n"
            f"link add {UNDERLAY_BRIDGE} {' '.join(mtu)} type bridge\n"
            f"link set {UNDERLAY_BRIDGE} up\n"))
        for i, (name, network) in enumerate(self.networks.items()):
            node = self.nodes[name]
            run_ip("-n", self.underlay_netns, "link", "add", f"n{i + 1}", *mtu, "master", UNDERLAY_BRIDGE, "up",
                "type", "veth", "peer", "name", UNDERLAY_LINK, *mtu, "netns", network.node_netns)
            lines = [f"addr add {a}/{UNDERLAY_CIDRS[ipaddress.ip_address(a).version].prefixlen} dev {UNDERLAY_LINK}"
                     + (" nodad" if ":" in a else "") for a in node.addresses]
            lines.append(f"link set {UNDERLAY_LINK} up")
            for other_name, other in self.nodes.items():
                if other_name != name:
                    lines += [f"route add {cidr} via {via} dev {UNDERLAY_LINK}"
                              for cidr, via in zip(other.pod_cidrs, other.addresses)]
            run_ip("-n", network.node_netns, "-batch", "-", stdin="".join(line + "\n" for line in lines))
            sysctl(network.node_netns, "net.ipv6.conf.all.forwarding=1")
        logger.info("sandbox underlay {} up: {}", self.underlay_netns,
                    ", ".join(f"{n.name} {' '.join(n.addresses)} pods {' '.join(n.pod_cidrs)}"
                              for n in self.nodes.values()))

    def stop(self) -> None:
        """Every node's pods and namespaces, then the underlay. Idempotent."""
        for network in self.networks.values():
            network.stop()
        if os.path.exists(f"/run/netns/{self.underlay_netns}"):
            subprocess.run(["ip", "netns", "delete", self.underlay_netns], capture_output=True)

    # -- pods --------------------------------------------------------------------------------------------
    def node_of(self, name: str) -> NodeNetwork:
        try:
            return self.networks[name]
        except KeyError:
            raise NodeError(f"no node {name!r} in this sandbox") from None

    def remove_pod(self, pod_uid: str) -> None:
        """Wherever the pod is (a node knows its own pods; the others have nothing to do)."""
        for network in self.networks.values():
            network.remove_pod(pod_uid)

    # -- faults ------------------------------------------------------------------------------------------
    def cut(self, name: str) -> None:
        """The node's underlay link goes down (see the module docstring)."""
        self._port(name, "down")

    def restore(self, name: str) -> None:
        self._port(name, "up")

    def _port(self, name: str, state: str) -> None:
        if len(self.nodes) < 2:
            raise NodeError("one node alone has no underlay to cut it off from")
        self.node_of(name)
        run_ip("-n", self.underlay_netns, "link", "set", f"n{list(self.nodes).index(name) + 1}", state)
        logger.info("sandbox node {}: underlay link {}", name, state)

