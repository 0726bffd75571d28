"""The `kube-vxlan-sandbox` console script: `serve` (the sandbox cluster in the foreground) and `demo`
(the seed's example end to end on it). Each subcommand's `--help` is its own module's."""

from __future__ import annotations

import importlib
import sys

#: subcommand → (module, function taking argv and returning an exit code)
COMMANDS = {
    "serve": ("kvc_sandbox.runner", "main"),
    "demo": ("kvc_sandbox.demo", "main"),
}

USAGE = """usage: kube-vxlan-sandbox COMMAND [ARGS]

A local Kubernetes API for developing and testing kube-vxlan-controller (not part of the product).

commands:
  serve     run the sandbox cluster in the foreground, until Ctrl-C or SIGTERM (root)
  demo      the seed's example end to end on the sandbox (root; --keep to leave it running)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"kube-vxlan-sandbox: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    module, function = COMMANDS[command]
    return getattr(importlib.import_module(module), function)(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
