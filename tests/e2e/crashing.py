"""`python tests/e2e/crashing.py IP run …`: the controller's CLI with `agent.differences` made to raise for
the pod whose network address is IP — a bug in one pod's path, injected from outside the product (no
test hook in it), for the escalation test that needs a process of its own to exit."""

from __future__ import annotations

import sys

from kube_vxlan_controller import agent, cli


def crash_for(address: str):
    real = agent.differences

    def differences(spec, link, underlay=None):
        if spec.ip is not None and str(spec.ip.ip) == address:
            raise RuntimeError(f"injected: a bug in the path of the pod with {address}")
        return real(spec, link, underlay)

    return differences


if __name__ == "__main__":
    agent.differences = crash_for(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
