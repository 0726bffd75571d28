"""`kube-vxlan-controller inspect nets NET…` and `list pods [PREFIX]`: ask the running controller.

They talk to the controller's loopback query endpoint (`--admin`, default 127.0.0.1:8081; also
`KVC_ADMIN`) and print the original's formats, or JSON with `-o json`. When no controller answers they
say so and exit 3; when the controller there is a standby (another replica leads), they say who leads
and exit 4, with the command that asks the leader (`kubectl -n NS exec POD -- kube-vxlan-controller …`:
the Lease's holder is the leader's pod name, `_` and a UUID) on a line of its own, to paste.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request

from .failures import Parser

DEFAULT_ADMIN = "127.0.0.1:8081"
NO_CONTROLLER = 3
NOT_LEADER = 4


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = Parser(prog=f"kube-vxlan-controller {prog}", description=description)
    p.add_argument("--admin", default=os.environ.get("KVC_ADMIN", DEFAULT_ADMIN),
                   help="the controller's query endpoint [env KVC_ADMIN, default %(default)s]")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    return p


def fetch(admin: str, path: str, params: list[tuple[str, str]], timeout: float):
    url = f"http://{admin}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def _ask(args, path: str, params: list[tuple[str, str]], command: list[str]) -> tuple[int, object]:
    """(0, the answer), or (an exit code, None) after saying what went wrong; `command` is the
    subcommand's words, for the command that asks the leader instead of a standby."""
    try:
        return 0, fetch(args.admin, path, params, args.timeout)
    except urllib.error.HTTPError as error:  # it answered, with an error
        body = error.read().decode(errors="replace").strip()
        standby = _standby(error.code, body)
        if standby is not None:
            print(_not_the_leader(args.admin, standby, command), file=sys.stderr)
            return NOT_LEADER, None
        print(f"kube-vxlan-controller: the controller at {args.admin} answered {error.code}: {body}", file=sys.stderr)
        return NO_CONTROLLER, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"kube-vxlan-controller: no controller answers at {args.admin} ({reason}); is it running? "
              f"(--admin ADDRESS or KVC_ADMIN)", file=sys.stderr)
        return NO_CONTROLLER, None


def _not_the_leader(admin: str, standby: dict, command: list[str]) -> str:
    """What a standby's answer says: who leads, and the command that asks the leader, on its own line."""
    said = f"kube-vxlan-controller: the controller at {admin} is not the leader ({standby['role']}, {standby['identity']})"
    if not standby["leader"]:
        return f"{said}; nobody leads yet (lease {standby['lease']} is free): ask again in a few seconds"
    namespace = standby["lease"].partition("/")[0]
    pod = standby["leader"].partition("_")[0]
    return (f"{said}; the leader is {standby['leader']}: ask it, in its pod:\n"
            f"kubectl -n {shlex.quote(namespace)} exec {shlex.quote(pod)} -- "
            f"{shlex.join(['kube-vxlan-controller', *command])}")


def _standby(code: int, body: str) -> dict | None:
    """The not-leading answer of the query endpoint (503 with role, identity, leader, lease), else None."""
    if code != 503:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and {"role", "identity", "leader", "lease"} <= answer.keys() else None


def format_inspect(networks: list[dict]) -> str:
    out = []
    for net in networks:
        out.append(f"[{net['network']}]")
        if net.get("error"):
            out.append(f" error: {net['error']}")
        blocks = []
        for m in net["members"]:
            shown = m["net"] if m.get("net") is not None else f"? (not read; desired: {m.get('desired', '')})"
            lines = [f" pod: {m['pod']} {m['ip']}", f" net: {shown}"]
            if m.get("differs"):
                lines.append(f" differs: {'; '.join(m['differs'])} (desired: {m.get('desired', '')})")
            if m.get("fdb") is None:
                lines.append(f" fdb: ? {m.get('error', '')}")
            else:
                lines += [f" fdb: {entry}" for entry in m["fdb"]] or [" fdb:"]
            blocks.append("\n".join(lines))
        for o in net.get("others", []):
            detail = f" ({o['error']})" if o.get("error") else ""
            blocks.append(f" pod: {o['pod']} {o['ip'] or '-'}\n not a member yet: {o['status']}{detail}")
        out.append("\n\n".join(blocks))
        out.append("")
    return "\n".join(out)


def format_pods(rows: list[dict]) -> str:
    return "".join(f"{r['pod']} {r['network']} {r['ip']}".rstrip() + "\n" for r in rows)


def inspect_main(argv: list[str]) -> int:
    p = _parser("inspect", "Show networks as the controller and the pods see them.")
    p.add_argument("what", choices=("nets",))
    p.add_argument("nets", nargs="+", metavar="NET")
    args = p.parse_args(argv)
    code, answer = _ask(args, "/v1/inspect", [("net", n) for n in args.nets], ["inspect", *argv])
    if code:
        return code
    print(json.dumps(answer, indent=1) if args.output == "json" else format_inspect(answer), end="\n" if args.output == "json" else "")
    return 0


def list_main(argv: list[str]) -> int:
    p = _parser("list", "List the pods the controller is aware of, one line per network.")
    p.add_argument("what", choices=("pods",))
    p.add_argument("prefix", nargs="?", default="", help="pod name prefix")
    args = p.parse_args(argv)
    code, answer = _ask(args, "/v1/pods", [("prefix", args.prefix)], ["list", *argv])
    if code:
        return code
    print(json.dumps(answer, indent=1) if args.output == "json" else format_pods(answer), end="\n" if args.output == "json" else "")
    return 0
