"""`kube-vxlan-sandbox demo [--keep] [--ip-family F] [--in-cluster]`: the seed's example end to end, on the
netns runtime (`demo.Demo`) or with the controller in its pod on the docker runtime
(`demo_incluster.InClusterDemo`)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from kube_vxlan_controller import logs

from .cluster import IP_FAMILIES
from .demo import Demo
from .demo_incluster import InClusterDemo


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kube-vxlan-sandbox demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="keep the sandbox and the controller running")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for convergence")
    p.add_argument("--ip-family", default="ipv4", choices=IP_FAMILIES,
                   help="the underlay's family (the pods' addresses; dual: IPv4 primary); the overlay stays IPv4")
    p.add_argument("--in-cluster", action="store_true",
                   help="the controller from its image in its pod (docker runtime, HTTPS, RBAC): run `make images` "
                        "first; inspect and list through kubectl exec, as the seed's README does")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("kube-vxlan-sandbox demo: needs root (the sandbox's pods are network namespaces)", file=sys.stderr)
        return 2
    if args.in_cluster and args.ip_family != "ipv4":
        print("kube-vxlan-sandbox demo: --in-cluster runs on the docker runtime, one IPv4 node (docs/nodes.md)",
              file=sys.stderr)
        return 2
    for tool in ("kubectl",) if args.in_cluster else ("kubectl", "ping"):
        if shutil.which(tool) is None:
            print(f"kube-vxlan-sandbox demo: `{tool}` not found (make demo installs ping: iputils-ping)",
                  file=sys.stderr)
            return 2
    logs.setup("WARNING")
    with tempfile.TemporaryDirectory(prefix="kvc-demo-") as workdir:
        if args.in_cluster:
            return InClusterDemo(Path(workdir), args.timeout).run(args.keep)
        return Demo(Path(workdir), args.timeout, args.ip_family).run(args.keep)
