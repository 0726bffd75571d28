"""The `kube-vxlan-controller` console script: one subcommand per surface.

Each subcommand lives in its own module; this file only parses the first word and hands over the rest,
so `--help` of a subcommand is that module's own.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__

#: subcommand → (module, function taking argv and returning an exit code)
COMMANDS = {
    "run": ("kube_vxlan_controller.run", "main"),
    "inspect": ("kube_vxlan_controller.queries", "inspect_main"),
    "list": ("kube_vxlan_controller.queries", "list_main"),
    "plan": ("kube_vxlan_controller.plan", "main"),
}

USAGE = """usage: kube-vxlan-controller COMMAND [ARGS]

commands:
  run       run the controller (in-cluster, or --kubeconfig PATH)
  inspect   inspect nets NET...: members, options and fdb of networks (asks the running controller)
  list      list pods [PREFIX]: pods the controller knows, one line per network
  plan      [-n NS] NAME | -f FILE [NAME] [--configmap FILE]: what the controller would run in a pod
  version   print the version
"""


def dispatch(prog: str, commands: dict[str, tuple[str, str]], usage: str, argv: list[str] | None) -> int:
    """Run the subcommand `argv[0]` names (see COMMANDS for the shape); usage on -h, exit 2 when unknown."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage, end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in commands:
        print(f"{prog}: unknown command {command!r}\n\n{usage}", end="", file=sys.stderr)
        return 2
    module, function = commands[command]
    return getattr(importlib.import_module(module), function)(rest) or 0


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["version"]:
        print(__version__)
        return 0
    return dispatch("kube-vxlan-controller", COMMANDS, USAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
