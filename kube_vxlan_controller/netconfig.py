"""The network ConfigMap as pods are resolved against it, with each network's last known good entry.

A running member must not lose its network because the ConfigMap was deleted, or because an edit made
the network's entry invalid: its interface, fdb and Wired condition would go, and readiness would flap,
while the packets it carries had no reason to stop. So the last valid entry of each network is kept:

- a network whose entry disappears or becomes invalid is *kept*: pods that were members on the last good
  entry keep resolving against it (`for_pod`), and nothing changes in them;
- a pod that did not have the network yet does not get it from a kept entry: it waits (the watcher holds
  it and says why), since the defaults it would need are not there;
- a valid entry ends the keeping; restoring the same content changes nothing in any pod.

Pure and single-threaded: the watcher calls it from its actor thread. The controller owns it and hands it
to each watcher it starts, so a restarted watcher keeps what was good (as it keeps the pod index).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

from . import options


class NetworkConfig:
    def __init__(self, where: str = "the network ConfigMap") -> None:
        #: how log lines and Events name the ConfigMap (`namespace/name`)
        self.where = where
        self.data: Mapping[str, str] = MappingProxyType({})
        #: network → its last valid entry
        self.good: dict[str, str] = {}
        #: network → why its last good entry is kept (its entry is gone or invalid now)
        self.kept: dict[str, str] = {}

    def update(self, data: Mapping[str, str]) -> dict[str, str | None]:
        """Take the ConfigMap's new data; returns the networks whose keeping changed: network → why it is
        kept now, or None when its entry is valid again."""
        self.data = MappingProxyType(dict(data))
        before = dict(self.kept)
        for network, text in data.items():
            problem = options.entry_problem(network, text)
            if problem is None:
                self.good[network] = text
                self.kept.pop(network, None)
            elif network in self.good:
                self.kept[network] = f"its entry in {self.where} is invalid ({problem})"
        for network in self.good.keys() - data.keys():
            self.kept[network] = f"{self.where} has no entry for it (deleted?)"
        changed: dict[str, str | None] = {n: why for n, why in self.kept.items() if before.get(n) != why}
        changed.update({n: None for n in before.keys() - self.kept.keys()})
        return changed

    def kept_among(self, networks: Iterable[str]) -> frozenset[str]:
        return frozenset(networks) & self.kept.keys()

    def for_pod(self, had: Iterable[str]) -> Mapping[str, str]:
        """The ConfigMap data to resolve a pod against that was a member of the networks `had`: kept
        networks among them resolve against their last good entry."""
        keep = self.kept_among(had)
        if not keep:
            return self.data
        return MappingProxyType({**self.data, **{network: self.good[network] for network in keep}})

    def describe(self, network: str) -> str:
        """`network vxeth1: <why it is kept>; running members keep its last good options "id=101 up"`."""
        return (f"network {network}: {self.kept[network]}; running members keep its last good options "
                f"{self.good[network]!r}")
