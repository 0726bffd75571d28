"""The `kube-vxlan-sandbox` console script: `serve` (the sandbox cluster in the foreground) and `demo`
(the seed's example end to end on it). Each subcommand's `--help` is its own module's."""

from __future__ import annotations

import sys

from kube_vxlan_controller.cli import dispatch

#: subcommand → (module, function taking argv and returning an exit code)
COMMANDS = {
    "serve": ("kvc_sandbox.runner", "main"),
    "demo": ("kvc_sandbox.demo_cli", "main"),
}

USAGE = """usage: kube-vxlan-sandbox COMMAND [ARGS]

A local Kubernetes API for developing and testing kube-vxlan-controller (not part of the product).

commands:
  serve     run the sandbox cluster in the foreground, until Ctrl-C or SIGTERM (root)
  demo      the seed's example end to end on the sandbox (root; --keep to leave it running)
"""


def main(argv: list[str] | None = None) -> int:
    return dispatch("kube-vxlan-sandbox", COMMANDS, USAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
