"""The `kube-vxlan-controller` console script: one subcommand per surface.

Each subcommand lives in its own module; this file only parses the first word and hands over the rest,
so `--help` of a subcommand is that module's own.

Errors a user can fix (a wrong flag or `KVC_*` value, a kubeconfig that cannot be loaded, an address in
use) are raised as `failures.Failure` anywhere below a subcommand's `main`: `main` here prints them as one line
on stderr, `kube-vxlan-controller COMMAND: what is wrong; what to do`, and exits with the failure's code,
without a traceback (with one too when the failure asks for it: `--log-level DEBUG`); once `run` knows
its settings, with `--log-format json`, that line is a JSON log line. Anything else is a bug and keeps
its traceback. Exit codes, the same for every subcommand:

- 0: done (`run`: stopped by SIGTERM/SIGINT);
- 1: `run` gave up (restart budget spent) or lost its leadership; `plan` found validation errors;
- 2: usage: a flag, an argument or a `KVC_*` value is wrong;
- 3: cannot start or cannot reach: the kubeconfig or the pod's service account cannot be loaded, an
  endpoint's address is taken, the cluster (`plan`) or the controller (`inspect`, `list`) does not answer;
- 4: `inspect`/`list` asked a standby: the message is the command that asks the leader.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from loguru import logger

from . import __version__
from .failures import USAGE_ERROR, Failure

#: subcommand → (module, function taking argv and returning an exit code)
COMMANDS = {
    "run": ("kube_vxlan_controller.run", "main"),
    "inspect": ("kube_vxlan_controller.queries", "inspect_main"),
    "list": ("kube_vxlan_controller.queries", "list_main"),
    "plan": ("kube_vxlan_controller.plan", "main"),
}

USAGE = """usage: kube-vxlan-controller COMMAND [ARGS]

commands:
  run       run the controller (--kubeconfig PATH, else in a pod its service account, else as kubectl:
            $KUBECONFIG, ~/.kube/config)
  inspect   inspect nets NET...: members, options and fdb of networks (asks the running controller)
  list      list pods [PREFIX]: pods the controller knows, one line per network
  plan      [--pod-namespace NS] NAME | -f FILE [NAME] [--configmap FILE]: what the controller would run
            in a pod
  version   print the version (also --version)

exit codes: 0 done, 1 run gave up / plan found errors, 2 usage, 3 cannot start or reach, 4 asked a standby
"""


def dispatch(prog: str, commands: dict[str, tuple[str, str]], usage: str, argv: list[str] | None) -> int:
    """Run the subcommand `argv[0]` names (see COMMANDS for the shape); usage on -h, exit 2 when unknown;
    a `Failure` becomes its one line and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage, end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in commands:
        print(f"{prog}: unknown command {command!r} (commands: {', '.join(commands)}; see {prog} --help)",
              file=sys.stderr)
        return USAGE_ERROR
    module, function = commands[command]
    try:
        return getattr(importlib.import_module(module), function)(rest) or 0
    except Failure as failure:
        cause = failure.__cause__ if failure.trace else None
        if failure.logged:
            logger.opt(exception=cause).error("{} {}: {}", prog, command, failure)
            return failure.code
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        print(f"{prog} {command}: {failure}", file=sys.stderr)
        return failure.code


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] in (["version"], ["--version"]):
        print(__version__)
        return 0
    return dispatch("kube-vxlan-controller", COMMANDS, USAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
