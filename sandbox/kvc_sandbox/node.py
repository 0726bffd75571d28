"""The sandbox's node: a bridge in a network namespace of its own, and one network namespace per pod.

Layout (nothing of it in the host's own namespace: no link, no address, no route)::

    netns kvcsb-<pid>-<tag>-node       lo, br0 (gateway ::1/.1 of each cidr), v1 v2 … (node ends of the veths);
                                       IPv4 forwarding on, ICMP redirects off
    netns kvcsb-<pid>-<tag>-p<N>       lo, eth0 (one address per cidr, default routes via the gateways)

With a `node` name (one node of several, cluster.py) the prefix is `kvcsb-<pid>-<tag>-<node>`.
`<pid>` is the process that created them, so `NodeNetwork.remove_stale()` can tell leftovers of a crashed
sandbox (dead pid) from namespaces of a running one, which it never touches. Namespace and link names come
from counters: never reused within one NodeNetwork, link names stay well under 15 characters.

Address families: one pod CIDR (IPv4 or IPv6) or two (dual-stack, the first is the primary family, as
`spec.podCIDRs` orders them). A pod gets one address in each, at the same host offset, as host-local IPAM
with two ranges does. IPv6 addresses are added `nodad`: no duplicate address detection to wait for in
namespaces the sandbox alone numbers. `mtu` sets the pods' eth0 (and the node ends): the underlay's MTU,
as a CNI gives pods the MTU of the node's uplink.

IPv4 pods are routed, not bridged, as Calico wires them: a pod's IPv4 address is a /32, its one route out
is the gateway (on the link), and the node routes from pod to pod (back out through br0). So a pod
resolves one neighbour, its gateway, whatever it talks to: on-link pods each broadcast an ARP request per
VXLAN peer, which br0 copied to every port and the machine's one neighbour table could not hold (why,
and what it cost: docs/nodes.md). IPv6 pods stay on the link (the CIDR's prefix): neighbour discovery
asks a solicited-node multicast group, not every port.

One pod costs three `ip` calls (netns add; veth created in the node namespace with its peer born as
`eth0` inside the pod namespace, already on br0 and up; one `ip -batch` inside the pod namespace).

Processes in a pod's namespace: each running container's main process (containers.py: PID 1 of a PID
namespace of its own, started and reaped by the kubelet emulation) and what exec runs in the containers.
`ProcessRegistry` tracks the exec processes per pod namespace (`nsenter`, which waits for the command it
forked into the container): like a real kubelet, the sandbox leaves an exec's process running when its
client goes away, and kills it when the pod goes. `remove_pod` and `stop` kill the registered processes,
then every process left in the pod's network namespace (one scan of /proc), then delete the namespace.

Concurrency contract: `NodeNetwork` and `ProcessRegistry` are synchronous and thread-safe. They are called
from executor threads (and `ProcessRegistry.add` from the event loop); a short lock guards their state,
the `ip` commands run outside it, so several pods can be set up at once. Every call blocks for a few
`ip` invocations (milliseconds), never longer.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Sequence

from loguru import logger

PREFIX = "kvcsb"
NETNS_DIR = "/run/netns"
BRIDGE = "br0"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-")
_TAG_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")
#: the most addresses one pod CIDR hands out (an IPv6 /64 would otherwise mean a loop of 2^64)
MAX_PODS = 65534
_tags = itertools.count(1)
#: what an address of each family is added with (see the module docstring)
_NODAD = {4: "", 6: " nodad"}
#: the node routes between its IPv4 pods, and sends them no redirect (they would go around it then)
_NODE_SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                 "net.ipv4.conf.default.send_redirects=0")


class NodeError(RuntimeError):
    """An `ip` command failed; the message holds the command and its stderr."""


def run_ip(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        cmd = " ".join(["ip", *args]) + (f" <<< {stdin!r}" if stdin else "")
        raise NodeError(f"{cmd}: exit {proc.returncode}: {proc.stderr.strip()}")


def sysctl(netns: str, *settings: str) -> None:
    """`sysctl -w` each of `settings` ("name=value") in `netns`; NodeError if one fails."""
    proc = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise NodeError(f"sysctl {' '.join(settings)} in {netns}: {proc.stderr.strip()}")


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _kill_processes_in(netns_names: list[str]) -> int:
    """SIGKILL every process whose network namespace is one of these (one scan of /proc); returns count."""
    inodes = set()
    for name in netns_names:
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except FileNotFoundError:
            continue
        inodes.add((st.st_dev, st.st_ino))
    if not inodes:
        return 0
    killed = 0
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, me):
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in inodes:
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


class ProcessRegistry:
    """The processes exec started, per pod namespace, so that removing a pod kills them all.

    Processes are held as pidfds: a pid that exited and got reused is never signalled. `kill_all(netns)`
    also closes that namespace: a process registered into it afterwards (an exec that raced with the
    pod's removal) is killed at once. `kill_everything()` closes all of them (the sandbox is stopping).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, dict[int, int]] = {}  # netns -> {pid: pidfd}
        self._closed: set[str] = set()
        self._all_closed = False

    def add(self, netns: str, pid: int) -> bool:
        """Track `pid` as running in `netns`; False (and the process killed) if the namespace is closed."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True  # already exited and reaped: nothing to track
        with self._lock:
            if not (self._all_closed or netns in self._closed):
                self._procs.setdefault(netns, {})[pid] = pidfd
                return True
        self._kill_fd(pidfd)
        os.close(pidfd)
        return False

    def discard(self, netns: str, pid: int) -> None:
        """The process exited: stop tracking it."""
        with self._lock:
            pidfd = self._procs.get(netns, {}).pop(pid, None)
            if pidfd is not None:
                os.close(pidfd)

    def pids(self, netns: str) -> list[int]:
        with self._lock:
            return sorted(self._procs.get(netns, {}))

    def count(self, netns: str | None = None) -> int:
        with self._lock:
            if netns is not None:
                return len(self._procs.get(netns, {}))
            return sum(len(p) for p in self._procs.values())

    def kill_all(self, netns: str) -> int:
        """SIGKILL every tracked process of `netns` and refuse new ones there; returns how many."""
        with self._lock:
            self._closed.add(netns)
            procs = self._procs.pop(netns, {})
            for pidfd in procs.values():
                self._kill_fd(pidfd)
                os.close(pidfd)
        return len(procs)

    def kill_everything(self) -> int:
        with self._lock:
            self._all_closed = True
            names = list(self._procs)
        return sum(self.kill_all(name) for name in names)

    @staticmethod
    def _kill_fd(pidfd: int) -> None:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass(frozen=True, slots=True)
class _Pod:
    netns: str
    veth: str  # the node end, in the node namespace
    offset: int  # the host offset of its addresses in every pod CIDR
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]  # one per pod CIDR, the primary first


class NodeNetwork:
    """One sandbox node: see the module docstring for the layout and the concurrency contract."""

    def __init__(self, *, tag: str | None = None, cidr: str | Sequence[str] = "10.66.0.0/16",
                 processes: ProcessRegistry | None = None, node: str = "", mtu: int | None = None) -> None:
        """`tag` tells apart several NodeNetworks of one process (letters and digits; default: a counter),
        `node` several nodes of one cluster (letters and digits). The pid is added to every name by
        NodeNetwork itself. `cidr`: the pod CIDR, or the pod CIDRs (dual-stack: primary first).
        `processes` is the registry exec adds to (default: a fresh one, `self.processes`)."""
        tag = tag if tag is not None else str(next(_tags))
        if not _TAG_RE.match(tag) or (node and not _TAG_RE.match(node)):
            raise ValueError(f"tag and node must be 1-24 letters or digits, got {tag!r}, {node!r}")
        self.networks = tuple(ipaddress.ip_network(c) for c in ([cidr] if isinstance(cidr, str) else cidr))
        if not 1 <= len(self.networks) <= 2 or len({n.version for n in self.networks}) != len(self.networks):
            raise ValueError(f"one pod CIDR, or one of each family, got {cidr!r}")
        for network in self.networks:
            if network.num_addresses < 4:
                raise ValueError(f"cidr {network} is too small")
        #: the primary pod CIDR, and the pods' gateways (the bridge's addresses), primary first
        self.network = self.networks[0]
        self.gateways = tuple(n[1] for n in self.networks)
        self.gateway = self.gateways[0]
        self.mtu = mtu
        self.prefix = f"{PREFIX}-{os.getpid()}-{tag}" + (f"-{node}" if node else "")
        self.node_netns = f"{self.prefix}-node"
        self.processes = processes if processes is not None else ProcessRegistry()
        self._lock = threading.Lock()
        self._pods: dict[str, _Pod] = {}
        self._used_ips: set[int] = set()
        self._next_host = 2  # offset in the network; round robin, like host-local IPAM
        self._counter = itertools.count(1)
        self._started = False
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the node namespace with its bridge. Raises NodeError (after cleaning up) on failure."""
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            run_ip("netns", "add", self.node_netns)
            run_ip("-n", self.node_netns, "-batch", "-", stdin=(
                "link set lo up\n"
                f"link add {BRIDGE} type bridge\n"
                + "".join(f"addr add {gw}/{n.prefixlen} dev {BRIDGE}{_NODAD[n.version]}\n"
                          for gw, n in zip(self.gateways, self.networks))
                + f"link set {BRIDGE} up\n"))
            sysctl(self.node_netns, *_NODE_SYSCTLS)
        except Exception:
            self.stop()
            raise
        logger.info("sandbox node {} up: bridge {} {}", self.node_netns, BRIDGE,
                    " ".join(f"{gw}/{n.prefixlen}" for gw, n in zip(self.gateways, self.networks)))

    def stop(self) -> None:
        """Kill every pod's processes, delete every namespace this node created. Idempotent."""
        with self._lock:
            self._stopped = True
            pods = list(self._pods.values())
            self._pods.clear()
            self._used_ips.clear()
        for pod in pods:
            self.processes.kill_all(pod.netns)
        # Also whatever we did not start ourselves, and namespaces of pods half set up.
        ours = [n for n in _netns_names() if n.startswith(self.prefix + "-")]
        _kill_processes_in(ours)
        if ours:
            # The node namespace first: deleting it takes every veth pair (and so the pods' eth0) along.
            ours.sort(key=lambda n: n != self.node_netns)
            subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in ours),
                           capture_output=True, text=True)
        left = [n for n in _netns_names() if n.startswith(self.prefix + "-")]
        if left:
            logger.warning("sandbox node {}: namespaces left after stop: {}", self.node_netns, left)
        elif ours:
            logger.info("sandbox node {} removed ({} namespaces)", self.node_netns, len(ours))

    # -- pods --------------------------------------------------------------------------------------------
    def add_pod(self, pod_uid: str) -> tuple[str, str]:
        """Create the pod's namespace and wire it to the bridge; returns (netns name, IP without prefix).
        Calling it again for a pod that has one returns the existing one."""
        with self._lock:
            if not self._started or self._stopped:
                raise NodeError(f"node {self.node_netns} is not running")
            if pod_uid in self._pods:
                pod = self._pods[pod_uid]
                return pod.netns, str(pod.ips[0])
            n = next(self._counter)
            offset = self._allocate()
            pod = _Pod(netns=f"{self.prefix}-p{n}", veth=f"v{n}", offset=offset,
                       ips=tuple(net.network_address + offset for net in self.networks))
            self._pods[pod_uid] = pod
        mtu = ("mtu", str(self.mtu)) if self.mtu else ()
        try:
            run_ip("netns", "add", pod.netns)
            run_ip("-n", self.node_netns, "link", "add", pod.veth, *mtu, "master", BRIDGE, "up",
                "type", "veth", "peer", "name", "eth0", *mtu, "netns", pod.netns)
            run_ip("-n", pod.netns, "-batch", "-", stdin=(
                "link set lo up\n"
                # IPv4: a /32 and the gateway on the link (routed pods, see the module docstring)
                + "".join(f"addr add {ip}/{32 if n.version == 4 else n.prefixlen} dev eth0{_NODAD[n.version]}\n"
                          for ip, n in zip(pod.ips, self.networks))
                + "link set eth0 up\n"
                + "".join((f"route add {gw} dev eth0 scope link\n" if gw.version == 4 else "")
                          + f"route add default via {gw} dev eth0\n" for gw in self.gateways)))
        except Exception:
            self.remove_pod(pod_uid)
            raise
        logger.debug("sandbox pod {} in {} with {}", pod_uid, pod.netns, " ".join(map(str, pod.ips)))
        return pod.netns, str(pod.ips[0])

    def remove_pod(self, pod_uid: str) -> None:
        """Kill the pod's processes, delete its veth and namespace. Idempotent."""
        with self._lock:
            pod = self._pods.pop(pod_uid, None)
            if pod is None:
                return
            self._used_ips.discard(pod.offset)
        self.processes.kill_all(pod.netns)
        _kill_processes_in([pod.netns])
        for args in (("-n", self.node_netns, "link", "del", pod.veth), ("netns", "delete", pod.netns)):
            try:
                run_ip(*args)
            except NodeError as exc:
                # A half-created pod lacks one of the two: only log what is not "does not exist".
                if "No such" not in str(exc) and "Cannot find" not in str(exc):
                    logger.warning("sandbox pod {}: {}", pod_uid, exc)

    def pod_netns(self, pod_uid: str) -> str | None:
        with self._lock:
            pod = self._pods.get(pod_uid)
            return pod.netns if pod else None

    def pod_ips(self, pod_uid: str) -> tuple[str, ...]:
        """The pod's addresses, primary first (empty if it has none)."""
        with self._lock:
            pod = self._pods.get(pod_uid)
            return tuple(map(str, pod.ips)) if pod else ()

    def _allocate(self) -> int:
        """Next free host offset after the last one handed out (caller holds the lock)."""
        # minus network, gateway and broadcast addresses
        size = min(MAX_PODS, *(n.num_addresses - 3 for n in self.networks))
        for i in range(size):
            offset = 2 + (self._next_host - 2 + i) % size
            if offset not in self._used_ips:
                self._used_ips.add(offset)
                self._next_host = offset + 1
                return offset
        raise NodeError(f"no free address left in {', '.join(map(str, self.networks))}")

    # -- leftovers ---------------------------------------------------------------------------------------
    @staticmethod
    def remove_stale() -> list[str]:
        """Delete `kvcsb-<pid>-…` namespaces whose pid is not a live process; returns their names.
        Namespaces of live processes (other sandboxes, this one) are never touched."""
        stale = []
        for name in _netns_names():
            m = _NAME_RE.match(name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                stale.append(name)
        if not stale:
            return []
        _kill_processes_in(stale)
        stale.sort(key=lambda n: not n.endswith("-node"))
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in stale),
                       capture_output=True, text=True)
        logger.info("removed {} stale sandbox namespaces: {}", len(stale), stale)
        return stale
